//! The origin core, sans-IO: publish and play requests (from RTMP, HTTP-FLV, WS-FLV and the
//! gateway's upstream pulls) are judged and answered here in one place, frames go into the hub
//! by handle, recordings are opened as hub readers, and everything the loop must do about it
//! comes out as `Action`s (flush, drop, hold or resume a publisher's input, end a viewer). No
//! sockets and no clock: `now_ms` is passed in. It does not parse protocols or write bytes.
//!
//! Access control lives here too: `judge` asks `crate::access` about every publish and play
//! (tokens, the auth file, signed URLs, then the `--on-publish`/`--on-play` hook on its worker
//! threads), and `publish`/`play` apply the stream, publisher and player limits. The protocol
//! glue only builds the `access::Request` and turns a refusal into its own answer.

pub mod avc_repair;
pub mod llhls;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::SystemTime;

use crate::access::hook::{Event, HookPool};
use crate::access::limits::{LimitHit, Limits};
use crate::access::{self, Access, Refusal};

use crate::hub::{Hub, HubConfig, OutputForm, PublishError, StreamHandle, ViewerId};
use crate::media::{Frame, StreamKey};
use crate::record::Recorders;
use crate::stats::history::ServerHistory;

/// One server history sample per 5 s, like the streams' (the dashboard's 10 minutes).
const SERVER_HISTORY_INTERVAL_MS: u64 = 5_000;

/// Which protocol a request came in on (for the judge and for logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Rtmp,
    HttpFlv,
    WsFlv,
    /// The FLV gateway's pull from its upstream (publishes into the hub).
    Upstream,
    Srt,
    /// A WHIP publisher (WebRTC).
    Whip,
}

/// "Connection `conn` (from `peer`, on `proto`) publishes or plays `app/name`" (names without
/// their query: the access check has already been passed).
#[derive(Clone, Copy, Debug)]
pub struct StreamRequest<'a> {
    pub conn: usize,
    /// `None` for the gateway's own upstream pulls (no per-address limits).
    pub peer: Option<SocketAddr>,
    pub proto: Proto,
    pub app: &'a str,
    pub name: &'a str,
}

pub type PublishRequest<'a> = StreamRequest<'a>;
pub type PlayRequest<'a> = StreamRequest<'a>;

/// The access check's answer on a publish or play (`Origin::judge`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judged {
    /// Go on with `publish`/`play`.
    Allow,
    /// Refused (already logged, with the peer and the reason, never the credential).
    Refuse(Refusal),
    /// The hook has the last word: the connection waits (read nothing from it) until
    /// `hook_answers` gives its verdict.
    Pending,
}

/// Why a request was refused; the protocol glue turns it into its own answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The app or stream name breaks the naming rule.
    BadName(String),
    /// The stream has an active publisher.
    Busy,
    /// A limit (`--max-streams`, `--max-publishers-per-ip`, `--max-players-per-stream`).
    Limit(LimitHit),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::BadName(e) => f.write_str(e),
            Refused::Busy => f.write_str("stream busy"),
            Refused::Limit(hit) => hit.fmt(f),
        }
    }
}

/// An accepted publish.
#[derive(Debug, PartialEq, Eq)]
pub struct Published {
    pub key: StreamKey,
    /// What the publisher passes with each frame and at the end.
    pub handle: StreamHandle,
    /// The idle publisher this one replaced: already detached; close its connection.
    pub took_over_from: Option<usize>,
    /// Viewers that waited for this publisher (RTMP ones get Play.PublishNotify).
    pub waiting_viewers: Vec<ViewerId>,
}

/// An accepted play: push the protocol preamble into the viewer's queue, then `start_viewer`.
#[derive(Debug, PartialEq, Eq)]
pub struct Playing {
    pub key: StreamKey,
    pub viewer: ViewerId,
    /// The stream has a publisher now (else the viewer waits for one).
    pub live: bool,
}

/// What the loop must do after a call into the core; read with `poll_action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The connection's viewer queue went from empty to non-empty: schedule its write.
    Flush(usize),
    /// The connection's viewer fell past a hard bound (the hub has ended it): report its
    /// skips, close it.
    DropSlow(usize),
    /// A recorder of the connection's stream is behind: stop reading the publisher's socket.
    HoldInput(usize),
    /// The recorders caught up (or gave up): read the publisher again.
    ResumeInput(usize),
    /// The viewer's stream ended: send its end marker, flush, close.
    EndViewer(ViewerId),
}

pub struct Origin {
    pub hub: Hub,
    recorders: Option<Recorders>,
    /// Publishers held back for their recorders: (connection, stream).
    held: Vec<(usize, StreamHandle)>,
    actions: VecDeque<Action>,
    flush_ids: Vec<ViewerId>,
    slow_ids: Vec<ViewerId>,
    /// Hold-back episodes so far (for `/metrics`).
    holds: u64,
    /// The process's last 10 minutes (CPU, memory, connections) for the dashboard.
    pub server_history: ServerHistory,
    /// Who may publish and play (open unless configured).
    pub access: Access,
    /// Connection, stream, publisher and player caps and their refusal counters.
    pub limits: Limits,
    /// The `--on-*` hook workers (None without hooks).
    hooks: Option<HookPool>,
    next_ask: u64,
    /// Requests waiting for their hook: ask id -> (connection, request).
    asking: HashMap<u64, (usize, access::Request)>,
    /// Accepted publishers: connection -> (peer, protocol), for the per-IP count and the notice.
    publishers: HashMap<usize, (SocketAddr, access::Protocol)>,
    /// `--hls-low-latency`: every publish gets an LL-HLS window as a reader (None when off).
    pub(super) llhls: Option<llhls::LlHls>,
    /// Publishers whose H.264 came with no configuration record and its parameter sets
    /// in-band (`avc_repair`), by connection; empty for every other stream.
    repairs: HashMap<usize, avc_repair::AvcRepair>,
}

impl Origin {
    pub fn new(config: HubConfig, recorders: Option<Recorders>) -> Origin {
        Origin {
            hub: Hub::new(config),
            recorders,
            held: Vec::new(),
            actions: VecDeque::new(),
            flush_ids: Vec::new(),
            slow_ids: Vec::new(),
            holds: 0,
            server_history: ServerHistory::new(SERVER_HISTORY_INTERVAL_MS),
            access: Access::open(),
            limits: Limits::new(&crate::access::LimitsConfig::default(), None),
            hooks: None,
            next_ask: 0,
            asking: HashMap::new(),
            publishers: HashMap::new(),
            llhls: None,
            repairs: HashMap::new(),
        }
    }

    /// Puts the configured access policy, limits and hook workers in force.
    pub fn set_access(&mut self, access: Access, limits: Limits, hooks: Option<HookPool>) {
        self.access = access;
        self.limits = limits;
        self.hooks = hooks;
    }

    /// The one policy point: every protocol's publish and play passes here before `publish` or
    /// `play`. `unix_now` is for signed URLs. A refusal is logged here, once.
    pub fn judge(&mut self, conn: usize, req: &access::Request, unix_now: u64) -> Judged {
        let refuse = |r: Refusal| {
            log::warn!("{}", access::log_line(req, &r));
            Judged::Refuse(r)
        };
        match self.access.decide(req, unix_now) {
            access::Decision::Allow => Judged::Allow,
            access::Decision::Refuse(r) => refuse(r),
            access::Decision::NeedsHook => {
                let event = match req.action {
                    access::Action::Publish => Event::Publish,
                    _ => Event::Play,
                };
                let (Some(pool), Some(url)) = (&self.hooks, self.access.hook(req.action)) else {
                    return refuse(Refusal::new(
                        access::RefuseKind::Hook,
                        "the hook workers are not running",
                    ));
                };
                let id = self.next_ask;
                self.next_ask += 1;
                match pool.ask(id, url, event, req) {
                    Ok(()) => {
                        self.asking.insert(id, (conn, req.clone()));
                        Judged::Pending
                    }
                    Err(r) => refuse(r),
                }
            }
        }
    }

    /// The verdicts of hooks that answered since the last call: (connection, Allow or Refuse).
    /// Answers for connections that left (`forget`) are dropped.
    pub fn hook_answers(&mut self) -> Vec<(usize, Judged)> {
        let mut out = Vec::new();
        let Some(pool) = &self.hooks else {
            return out;
        };
        while let Some(a) = pool.poll_answer() {
            let Some((conn, req)) = self.asking.remove(&a.id) else {
                continue;
            };
            match a.decision() {
                access::Decision::Refuse(r) => {
                    log::warn!("{}", access::log_line(&req, &r));
                    out.push((conn, Judged::Refuse(r)));
                }
                _ => out.push((conn, Judged::Allow)),
            }
        }
        out
    }

    /// The connection left: a hook answer still due for it is dropped when it comes.
    pub fn forget(&mut self, conn: usize) {
        self.asking.retain(|_, (c, _)| *c != conn);
    }

    /// Sends the `--on-unpublish` or `--on-stop` notice (fire and forget).
    fn notice(&mut self, event: Event, key: &StreamKey, peer: SocketAddr, proto: access::Protocol) {
        let url = match event {
            Event::Unpublish => self.access.unpublish_hook(),
            _ => self.access.stop_hook(),
        };
        let (Some(url), Some(pool)) = (url.cloned(), self.hooks.as_mut()) else {
            return;
        };
        let action = if event == Event::Unpublish {
            access::Action::Publish
        } else {
            access::Action::Play
        };
        let req = access::Request::http(action, proto, &key.app, &key.stream, "", None, peer);
        pool.notify(&url, event, &req);
    }

    /// A player of `key` from `peer` left (for `--on-stop`).
    pub fn player_left(&mut self, key: &StreamKey, peer: SocketAddr, proto: access::Protocol) {
        self.notice(Event::Stop, key, peer, proto);
    }

    /// Judges and performs a publish: one publisher per key (an idle one is taken over), and
    /// the recordings of the new session start as readers of its stream.
    pub fn publish(
        &mut self,
        req: &PublishRequest,
        now_ms: u64,
        wall: SystemTime,
    ) -> Result<Published, Refused> {
        let key = StreamKey::new(req.app, req.name).map_err(|e| Refused::BadName(e.to_string()))?;
        if let Some(peer) = req.peer {
            // A takeover does not add a stream; the per-IP count applies either way.
            let streams = if self.hub.is_live(&key) {
                0
            } else {
                self.hub.live_streams()
            };
            self.limits
                .admit_publisher(peer.ip(), streams, now_ms)
                .map_err(|r| self.limit_refused(r))?;
        }
        let ok = match self.hub.publish(&key, req.conn, now_ms) {
            Ok(ok) => ok,
            Err(PublishError::Busy) => {
                if let Some(peer) = req.peer {
                    self.limits.release_publisher(peer.ip());
                }
                return Err(Refused::Busy);
            }
        };
        if let Some(peer) = req.peer {
            self.publishers
                .insert(req.conn, (peer, protocol_of(req.proto)));
        }
        if let Some(old) = ok.took_over_from {
            self.held.retain(|&(c, _)| c != old);
            self.publisher_gone(old, &key);
        }
        if let Some(reader) = self.recorders.as_mut().and_then(|r| r.open(&key, wall)) {
            self.hub.add_reader(ok.handle, Box::new(reader));
        }
        if let Some(ll) = self.llhls.as_mut() {
            self.hub.add_reader(ok.handle, ll.open(&key, req.conn));
        }
        Ok(Published {
            key,
            handle: ok.handle,
            took_over_from: ok.took_over_from,
            waiting_viewers: ok.waiting_viewers,
        })
    }

    /// Judges a play and attaches the viewer (it waits when there is no publisher yet).
    pub fn play(
        &mut self,
        req: &PlayRequest,
        form: OutputForm,
        now_ms: u64,
    ) -> Result<Playing, Refused> {
        let key = StreamKey::new(req.app, req.name).map_err(|e| Refused::BadName(e.to_string()))?;
        let players = self.hub.players(&key);
        self.limits
            .admit_player(players, now_ms)
            .map_err(|r| self.limit_refused(r))?;
        if !self.hub.is_live(&key) {
            // Every player of a stream with no publisher waits for one.
            self.limits
                .admit_waiting(players, now_ms)
                .map_err(|r| self.limit_refused(r))?;
        }
        let (viewer, live) = self.hub.add_viewer(&key, form, req.conn, now_ms);
        Ok(Playing { key, viewer, live })
    }

    /// Starts media for a viewer once its preamble is queued; it may need a flush.
    pub fn start_viewer(&mut self, viewer: ViewerId) {
        self.hub.start_viewer(viewer);
    }

    /// A frame from the publisher `conn` of `h`: fan-out, then the actions it calls for.
    /// No allocation, hashing or key clone here beyond what the hub does per form (an H.264
    /// stream sent with no configuration record goes through `avc_repair` first).
    pub fn frame(&mut self, h: StreamHandle, conn: usize, frame: Frame, now_ms: u64) {
        if frame.track == crate::media::Track::Video
            && frame.codec == crate::media::Codec::Avc
            && (frame.config || !self.repairs.is_empty())
        {
            return self.frame_repaired(h, conn, frame, now_ms);
        }
        self.frame_now(h, conn, frame, now_ms);
    }

    /// An H.264 frame of a publisher that sent, or may send, no configuration record.
    fn frame_repaired(&mut self, h: StreamHandle, conn: usize, frame: Frame, now_ms: u64) {
        use avc_repair::Repaired;
        let repair = match self.repairs.get_mut(&conn) {
            Some(r) => r,
            None => {
                // Only an empty record (the tag's 5 bytes and nothing after).
                let broken = frame.config && frame.data.len() == 5 && frame.data[0] & 0x0f == 7;
                if !broken {
                    return self.frame_now(h, conn, frame, now_ms);
                }
                if let Some(key) = self.hub.key(h) {
                    log::warn!(
                        "{key}: H.264 with an empty configuration record (its SPS/PPS in the pictures, \
                         Annex B: FFmpeg's -f tee or -flags -global_header); made whole at ingest"
                    );
                }
                self.repairs.entry(conn).or_default()
            }
        };
        match repair.repair(frame) {
            Repaired::Drop => {}
            Repaired::Pass(f) => self.frame_now(h, conn, f, now_ms),
            Repaired::WithRecord(record, f) => {
                self.frame_now(h, conn, record, now_ms);
                self.frame_now(h, conn, f, now_ms);
            }
        }
    }

    fn frame_now(&mut self, h: StreamHandle, conn: usize, frame: Frame, now_ms: u64) {
        let outcome = self.hub.frame(h, conn, frame, now_ms);
        let hold = outcome.hold_publisher;
        // The outcome borrows the hub: copy the ids into reused buffers first.
        self.flush_ids.clear();
        self.flush_ids.extend_from_slice(outcome.flush);
        self.slow_ids.clear();
        self.slow_ids.extend_from_slice(outcome.too_slow);
        for &v in &self.flush_ids {
            if let Some(vw) = self.hub.viewer_ref(v) {
                self.actions.push_back(Action::Flush(vw.token));
            }
        }
        for &v in &self.slow_ids {
            if let Some(vw) = self.hub.viewer_ref(v) {
                self.actions.push_back(Action::DropSlow(vw.token));
            }
        }
        if hold && !self.held.iter().any(|&(c, _)| c == conn) {
            self.held.push((conn, h));
            self.holds += 1;
            self.actions.push_back(Action::HoldInput(conn));
        }
    }

    /// The AAC the audio bridges made (on the loop's wake-up): fanned out, then the actions
    /// it calls for (flushes, slow viewers).
    pub fn bridged_audio(&mut self, now_ms: u64) {
        let outcome = self.hub.poll_bridges(now_ms);
        self.flush_ids.clear();
        self.flush_ids.extend_from_slice(outcome.flush);
        self.slow_ids.clear();
        self.slow_ids.extend_from_slice(outcome.too_slow);
        for &v in &self.flush_ids {
            if let Some(vw) = self.hub.viewer_ref(v) {
                self.actions.push_back(Action::Flush(vw.token));
            }
        }
        for &v in &self.slow_ids {
            if let Some(vw) = self.hub.viewer_ref(v) {
                self.actions.push_back(Action::DropSlow(vw.token));
            }
        }
    }

    /// True while `conn` is held back for its recorders.
    pub fn is_held(&self, conn: usize) -> bool {
        self.held.iter().any(|&(c, _)| c == conn)
    }

    /// Checks the held publishers (on a recorder's wake-up and on the loop's timer): those
    /// whose recorders drained, or gave up after their stall bound, are resumed.
    pub fn poll_held(&mut self, now_ms: u64) {
        let mut i = 0;
        while i < self.held.len() {
            let (conn, h) = self.held[i];
            if self.hub.readers_ready(h, now_ms) {
                self.held.swap_remove(i);
                self.actions.push_back(Action::ResumeInput(conn));
            } else {
                i += 1;
            }
        }
    }

    /// The once-a-second sample for the dashboard: every stream's health and history, and the
    /// server's (cumulative CPU seconds, resident bytes when known, open connections), with each
    /// stream's WHEP sessions (`webrtc`), which the hub does not count.
    pub fn sample_stats(
        &mut self,
        now_ms: u64,
        cpu_seconds: f64,
        rss: Option<u64>,
        conns: usize,
        webrtc: &dyn Fn(&StreamKey) -> u32,
    ) {
        self.hub.sample_stats_with(now_ms, webrtc);
        let conns = u32::try_from(conns).unwrap_or(u32::MAX);
        self.server_history.sample(now_ms, cpu_seconds, rss, conns);
    }

    /// Hold-back episodes so far.
    pub fn holds(&self) -> u64 {
        self.holds
    }

    /// True when some publisher is held (the loop then checks `poll_held` on every wake-up).
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// The publish of `conn` on `h` ended (ignored when it is not the current publisher):
    /// every viewer gets `EndViewer`; the recordings are finalised.
    pub fn unpublish(&mut self, h: StreamHandle, conn: usize) {
        self.held.retain(|&(c, _)| c != conn);
        self.repairs.remove(&conn);
        if let Some(key) = self.hub.key(h).cloned() {
            if let Some(ll) = self.llhls.as_mut() {
                ll.end(&key, conn);
            }
            self.publisher_gone(conn, &key);
        }
        for v in self.hub.unpublish(h, conn) {
            self.actions.push_back(Action::EndViewer(v));
        }
    }

    /// Shutdown: every publish ends (its viewers get `EndViewer`), and the publishers'
    /// connections are returned for the loop to close. Players still waiting end too.
    pub fn shut_down(&mut self) -> Vec<usize> {
        let live: Vec<(StreamKey, usize)> = self
            .hub
            .streams()
            .filter_map(|s| s.publisher.map(|p| (s.key, p)))
            .collect();
        let mut publishers = Vec::with_capacity(live.len());
        for (key, conn) in live {
            if let Some(h) = self.hub.handle(&key) {
                self.unpublish(h, conn);
                publishers.push(conn);
            }
        }
        for v in self.hub.viewer_ids() {
            self.actions.push_back(Action::EndViewer(v));
        }
        publishers
    }

    /// The retention thread's queue, for the API's deletions (`None` without recorders).
    pub fn keeper(&self) -> Option<crate::record::retention::KeeperHandle> {
        self.recorders.as_ref().and_then(|r| r.keeper())
    }

    /// Finalises every recording and stops the recorder workers (after `shut_down`).
    pub fn finish_recordings(&mut self) {
        // Ended Opus publishes' recordings take their audio bridge's last AAC first.
        self.hub.finish_draining();
        if let Some(rec) = self.recorders.take() {
            log::info!("finalising recordings");
            rec.shutdown();
        }
    }

    /// A limit refused a newcomer: its rate-limited log line, and the refusal.
    fn limit_refused(&self, r: crate::access::limits::Refused) -> Refused {
        if let Some(line) = r.log {
            log::warn!("{line}");
        }
        Refused::Limit(r.hit)
    }

    /// Publisher `conn` of `key` is gone (left or taken over): its per-IP count is released
    /// and `--on-unpublish` hears of it.
    fn publisher_gone(&mut self, conn: usize, key: &StreamKey) {
        if let Some((peer, proto)) = self.publishers.remove(&conn) {
            self.limits.release_publisher(peer.ip());
            self.notice(Event::Unpublish, key, peer, proto);
        }
    }

    /// The next thing the loop must do, in order.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

/// The access module's name for a protocol.
pub fn protocol_of(p: Proto) -> access::Protocol {
    match p {
        Proto::Rtmp => access::Protocol::Rtmp,
        Proto::HttpFlv => access::Protocol::HttpFlv,
        Proto::WsFlv => access::Protocol::WsFlv,
        Proto::Upstream => access::Protocol::Gateway,
        Proto::Srt => access::Protocol::Srt,
        Proto::Whip => access::Protocol::WebRtc,
    }
}

#[cfg(test)]
mod tests;
