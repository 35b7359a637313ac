//! Glue from HTTP requests to responses and viewers on the HTTP port: live HTTP-FLV and WS-FLV
//! viewers, the API, CORS preflight; keep-alive and pipelined requests for everything else.

use bytes::Buf;
use log::{debug, info, warn};

use std::time::SystemTime;

use bytes::Bytes;

use super::conn::{Access, ConnState, FileBody, Listener};
use super::Server;
use crate::http::embedded;
use crate::http::files::{Body, Root, StaticRequest};
use crate::http::request::{self, Request, MAX_HEAD};
use crate::http::response;
use crate::http::route::{route, Route};
use crate::http::ws::{self, WsInputEvent, WsSession};
use crate::hub::OutputForm;
use crate::media::StreamKey;
use crate::origin::{Judged, PlayRequest, Proto, Refused};

/// Answers queued on one connection before its pipelined requests wait for them to drain: without
/// it, 32 KiB of tiny pipelined GETs for a 64 KiB file would queue 100 MB of answers.
const PIPELINE_OUT_MAX: usize = 256 * 1024;

impl Server {
    pub(super) fn http_input(&mut self, token: usize, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match &mut conn.state {
            ConnState::HttpHead { .. } => {
                if conn.close_after_flush {
                    return; // an answer that ends the connection is on its way; ignore the rest
                }
                // A WHEP offer's body is read into the same buffer (`webrtc::MAX_OFFER` at most).
                let bound = if conn.head.starts_with(b"POST ") {
                    2 * MAX_HEAD + super::webrtc::MAX_OFFER
                } else {
                    2 * MAX_HEAD
                };
                if conn.head.len() + data.len() > bound {
                    // Pipelined requests piling up behind a body, or one endless head.
                    let peer = conn.peer;
                    warn!(
                        "HTTP {peer}: more than {} bytes of request heads pending; closing",
                        2 * MAX_HEAD
                    );
                    self.totals.bound("http-pending-input");
                    if conn.body.is_some() {
                        self.close(token, "request flood");
                    } else {
                        self.http_refuse(token, 431, "Too many pending request bytes.");
                        self.write_conn(token);
                    }
                    return;
                }
                if conn.head.is_empty() {
                    conn.head_started = self.now;
                }
                conn.head.extend_from_slice(data);
                self.http_parse(token);
            }
            ConnState::LlhlsWait(_) => self.llhls_input(token, data),
            // A live viewer has nothing more to say; what it sends is dropped.
            ConnState::HttpFlv { .. } | ConnState::Pending { .. } | ConnState::Judging { .. } => {}
            ConnState::WsFlv { ws, .. } => {
                let peer = conn.peer;
                match ws.handle_input(data) {
                    Ok(event) => {
                        let out = ws.take_output();
                        if event == WsInputEvent::Closed {
                            conn.close_after_flush = true;
                        }
                        self.push_out(token, out);
                        self.write_conn(token);
                    }
                    Err(e) => {
                        warn!("WS-FLV {peer}: {e}; closing");
                        if matches!(e, tungstenite::Error::Capacity(_)) {
                            self.totals.bound("ws-message-bytes");
                        }
                        self.close(token, "WebSocket error");
                    }
                }
            }
            ConnState::Rtmp(_) => {}
        }
    }

    /// Parses and answers every complete request head buffered (pipelining), in order.
    pub(super) fn http_parse(&mut self, token: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            if conn.closed
                || conn.close_after_flush
                || conn.body.is_some()
                || conn.out.len() > PIPELINE_OUT_MAX
                || !matches!(conn.state, ConnState::HttpHead { .. })
            {
                break;
            }
            match request::parse(&conn.head) {
                Ok(Some((req, len))) => {
                    // The one request with a body: a WHEP offer, read whole before it is served.
                    match super::webrtc::offer_body(&req) {
                        None => conn.head.advance(len),
                        Some(Err((status, why))) => {
                            let peer = conn.peer;
                            warn!("HTTP {peer}: WHEP offer refused: {why}");
                            self.http_refuse(token, status, why);
                            break;
                        }
                        Some(Ok(n)) if conn.head.len() < len + n => {
                            // curl asks before sending a body over 1 KiB (RFC 9110 10.1.1).
                            if req.header_has_token("expect", "100-continue") {
                                self.whep_continue(token);
                            }
                            break;
                        }
                        Some(Ok(n)) => {
                            let body = conn.head[len..len + n].to_vec();
                            conn.head.advance(len + n);
                            self.whep_set_body(token, body);
                        }
                    }
                    let Some(conn) = self.conns.get_mut(token) else {
                        return;
                    };
                    if let ConnState::HttpHead { served } = &mut conn.state {
                        *served += 1;
                    }
                    self.http_request(token, req);
                }
                Ok(None) => {
                    if conn.head.len() > MAX_HEAD {
                        self.totals.bound("http-head-bytes");
                        self.http_refuse(token, 431, "Request header fields too large.");
                    }
                    break;
                }
                Err(e) => {
                    let (peer, hint) = (conn.peer, super::proxied::hint(&conn.head));
                    warn!("HTTP {peer}: {e}; answering {}{hint}", e.status());
                    if e.status() == 431 {
                        self.totals.bound("http-head-bytes");
                    }
                    self.http_refuse(token, e.status(), &e.to_string());
                    break;
                }
            }
        }
        self.write_conn(token);
    }

    fn http_refuse(&mut self, token: usize, status: u16, body: &str) {
        if let Some(conn) = self.conns.get_mut(token) {
            conn.out.push(response::simple(status, body, false).into());
            conn.close_after_flush = true;
            conn.head.clear();
        }
    }

    pub(super) fn http_reply(&mut self, token: usize, bytes: Vec<u8>, keep_alive: bool) {
        if let Some(conn) = self.conns.get_mut(token) {
            if let Some(a) = &mut conn.access {
                a.status = status_of(&bytes);
                a.bytes = body_len_of(&bytes);
            }
            conn.out.push(bytes.into());
            if !keep_alive {
                conn.close_after_flush = true;
            }
        }
    }

    fn http_request(&mut self, token: usize, req: Request) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // Pipelined: the previous answer is queued whole by now, and its entry would be replaced
        // below; log it first, so every request gets its line (issue 13 hole 3).
        if let Some(previous) = conn.access.take() {
            let line = super::access_line(conn.peer, previous);
            self.write_access(line);
        }
        if !self.http_forwarded(token, &req) {
            return;
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let listener = conn.listener;
        let started = self.now;
        // The send timeout counts from here when the answer cannot go out at once.
        conn.last_output = started;
        conn.access = Some(Access {
            request_line: req.request_line(),
            status: 0,
            bytes: 0,
            wall: SystemTime::now(),
            started,
        });
        if let Some(path) = super::webrtc::whep_path(req.path()) {
            if listener != Listener::Web && self.setup.mode == "origin" {
                return self.whep_request(token, &req, path);
            }
        }
        if req.has_body {
            // We take no bodies and do not read this one: answer and close.
            let peer = self.conns.get(token).map(|c| c.peer);
            warn!("HTTP {peer:?}: {} with a body not allowed", req.method);
            return self.http_reply(token, method_not_allowed(false), false);
        }
        let route = route(req.path());
        if self.setup.mode == "file-gateway" && super::recordings::gateway_route(&route) {
            // The file gateway answers the recordings listing and playback from its root's index.
            return self.http_recordings_gateway(token, &req, route);
        }
        // The web port is static files, plus the read-only API on the origin: its pages need it.
        let api_on_web =
            self.setup.mode == "origin" && (route.is_api() || matches!(route, Route::Playback(_)));
        if listener == Listener::Web && !api_on_web {
            return self.http_static(token, &req);
        }
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        if req.method == "OPTIONS" {
            return self.http_reply(token, response::options(keep_alive), keep_alive);
        }
        let delete = req.method == "DELETE"
            && matches!(
                &route,
                Route::ApiRecordingsOf {
                    session: Some(_),
                    ..
                }
            );
        if req.method != "GET" && !head_only && !delete {
            let peer = self.conns.get(token).map(|c| c.peer);
            warn!("HTTP {peer:?}: method {} not allowed", req.method);
            return self.http_reply(token, method_not_allowed(keep_alive), keep_alive);
        }
        if route.is_api() || route == Route::Metrics {
            let auth = req.header("authorization");
            if let crate::access::Decision::Refuse(r) =
                self.core.access.check_api(auth, &req.target)
            {
                if route == Route::ApiStreams {
                    // The home page still lists what is live for a viewer without the token.
                    let body = self.api_streams_public();
                    let reply =
                        response::text(200, "application/json", &body, keep_alive, head_only);
                    return self.http_reply(token, reply, keep_alive);
                }
                let peer = self.conns.get(token).map(|c| c.peer);
                warn!(
                    "HTTP {peer:?}: {} refused: API token {}",
                    req.path(),
                    r.kind.as_str()
                );
                self.totals.refused += 1;
                let reply = crate::server::reply::http(&r, keep_alive, head_only);
                return self.http_reply(token, reply, keep_alive);
            }
        }
        let (content_type, body) = match route {
            Route::LiveFlv(key) => return self.http_live(token, &req, key),
            Route::Llhls { key, file } => return self.http_llhls(token, &req, key, file),
            Route::Static => return self.http_static(token, &req),
            Route::ApiStreams => ("application/json", self.api_streams()),
            Route::ApiHistory => ("application/json", self.api_history()),
            Route::ApiServer => ("application/json", self.api_server()),
            Route::ApiRecordings => {
                let query = req.query().unwrap_or("");
                let body = match &self.setup.data_dir {
                    Some(dir) => super::recordings::recordings_json(dir, query),
                    None => "{\"recordings\":[]}".to_string(),
                };
                ("application/json", body)
            }
            Route::ApiRecordingsOf { key, session } => {
                return self.http_recordings_of(token, &req, key, session)
            }
            Route::Playback(key) => return self.http_playback(token, &req, key),
            Route::Metrics => ("text/plain; version=0.0.4; charset=utf-8", self.metrics()),
        };
        let reply = response::text(200, content_type, &body, keep_alive, head_only);
        self.http_reply(token, reply, keep_alive)
    }

    /// A recording file whose local copy is gone (`--upload-delete-local`) but that the bucket holds:
    /// `302` to a presigned GET of its object (valid an hour), so that players and downloads fetch it
    /// from the bucket (Range requests included). True when answered.
    fn redirect_to_bucket(&mut self, token: usize, req: &Request) -> bool {
        let (Some(remote), Some(data)) = (&self.setup.remote, &self.setup.data_dir) else {
            return false;
        };
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            return false;
        }
        let path = req.path().trim_start_matches('/');
        let clean = path.split('/').all(|p| {
            !p.is_empty() && p != "." && p != ".." && !p.contains('\\') && !p.contains('%')
        });
        if !clean || !crate::record::upload::is_media(path) {
            return false;
        }
        let Some(rel) = crate::record::upload::object_rel(data, path) else {
            return false;
        };
        let url = remote.presigned_get(&rel);
        let keep_alive = req.keep_alive();
        let head = format!(
            "HTTP/1.1 302 Found\r\nLocation: {url}\r\nContent-Length: 0\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\n{}\r\n",
            if keep_alive { "" } else { "Connection: close\r\n" }
        );
        self.http_reply(token, head.into_bytes(), keep_alive);
        true
    }

    /// Everything that is not live or API: the pages and the recordings, from the static roots.
    fn http_static(&mut self, token: usize, req: &Request) {
        if is_index_path(&req.target) {
            // The recordings index (`record::index`, `{data}/index/`) is the API's to answer,
            // behind --api-token; as static files it would list every session to anyone.
            let keep_alive = req.keep_alive();
            return self.http_reply(
                token,
                response::simple(404, "Not found.", keep_alive),
                keep_alive,
            );
        }
        if !self.is_page(req.path()) {
            // A recording (or a listing of them): `--files-token` when set.
            let Some(peer) = self.conns.get(token).map(|c| c.peer) else {
                return;
            };
            let areq = crate::access::Request::http(
                crate::access::Action::Files,
                crate::access::Protocol::Files,
                "",
                req.path(),
                &req.target,
                req.header("authorization"),
                peer,
            );
            if let crate::access::Decision::Refuse(r) = self.core.access.decide(&areq, 0) {
                warn!("{}", crate::access::log_line(&areq, &r));
                return self.http_access_refused(token, req, &r);
            }
        }
        let home = self.setup.home_page && req.path() == "/" && has_home_page(&self.setup.roots);
        let sreq = StaticRequest {
            method: &req.method,
            target: if home { "/home.html" } else { &req.target },
            range: req.header("range"),
            if_none_match: req.header("if-none-match"),
            if_modified_since: req.header("if-modified-since"),
            keep_alive: req.keep_alive(),
        };
        let resp = super::fs::respond(
            &self.setup.roots,
            &sreq,
            &super::fs::origin_policy(self.setup.dir_listing),
            SystemTime::now(),
        );
        if resp.status == 404 && self.redirect_to_bucket(token, req) {
            return;
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if let Some(why) = &resp.refusal {
            // A 404 is logged once, by its access line; the reason is for debugging.
            if resp.status == 404 {
                debug!(
                    "HTTP {}: {} {}: {why}",
                    conn.peer, resp.status, resp.log_path
                );
            } else {
                warn!(
                    "HTTP {}: {} {}: {why}",
                    conn.peer, resp.status, resp.log_path
                );
            }
        }
        queue_static(conn, resp, sreq.keep_alive);
    }

    /// `/{app}/{stream}.flv`: first the access check (before saying whether the stream is
    /// live), then `http_live_allowed`; a hook's verdict comes back through `http_judged`.
    pub(super) fn http_live(&mut self, token: usize, req: &Request, key: StreamKey) {
        let protocol = if self.gateway.is_some() {
            crate::access::Protocol::Gateway
        } else if ws::is_upgrade(req) {
            crate::access::Protocol::WsFlv
        } else {
            crate::access::Protocol::HttpFlv
        };
        if let Some(key) = self.http_judge_play(token, req, key, protocol) {
            self.http_live_allowed(token, req, key);
        }
    }

    /// The play check of an HTTP request: `Some(key)` when allowed now; a refusal is answered
    /// here, and a pending verdict parks the connection in `Judging` (`http_judged` resumes it
    /// by its route).
    pub(super) fn http_judge_play(
        &mut self,
        token: usize,
        req: &Request,
        key: StreamKey,
        protocol: crate::access::Protocol,
    ) -> Option<StreamKey> {
        self.http_judge(token, req, key, protocol, crate::access::Action::Play)
    }

    /// `http_judge_play` for any action (a WHIP offer is a publish).
    pub(super) fn http_judge(
        &mut self,
        token: usize,
        req: &Request,
        key: StreamKey,
        protocol: crate::access::Protocol,
        action: crate::access::Action,
    ) -> Option<StreamKey> {
        let peer = self.conns.get(token).map(|c| c.peer)?;
        let areq = crate::access::Request::http(
            action,
            protocol,
            &key.app,
            &key.stream,
            &req.target,
            req.header("authorization"),
            peer,
        );
        match self.core.judge(token, &areq, super::unix_now()) {
            Judged::Allow => return Some(key),
            Judged::Refuse(r) => self.http_access_refused(token, req, &r),
            Judged::Pending => {
                let conn = self.conns.get_mut(token)?;
                conn.judging = true;
                conn.head.clear();
                conn.state = ConnState::Judging {
                    key,
                    req: Box::new(req.clone()),
                };
            }
        }
        None
    }

    /// 401/403 with the reason (CORS headers, so a page can show it); never the credential.
    pub(super) fn http_access_refused(
        &mut self,
        token: usize,
        req: &Request,
        r: &crate::access::Refusal,
    ) {
        self.totals.refused += 1;
        let keep_alive = req.keep_alive();
        let reply = crate::server::reply::http(r, keep_alive, req.method == "HEAD");
        self.http_reply(token, reply, keep_alive);
    }

    /// The hook's verdict on a waiting live request.
    pub(super) fn http_judged(&mut self, token: usize, verdict: &Judged) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if !matches!(conn.state, ConnState::Judging { .. }) {
            return;
        }
        let ConnState::Judging { key, req } =
            std::mem::replace(&mut conn.state, ConnState::HttpHead { served: 1 })
        else {
            return;
        };
        conn.judging = false;
        match verdict {
            Judged::Allow if super::webrtc::whep_path(req.path()).is_some() => {
                self.whep_judged(token, &req, key, true)
            }
            Judged::Refuse(r) if super::webrtc::whep_path(req.path()).is_some() => {
                self.whep_judged(token, &req, key, false);
                self.http_access_refused(token, &req, r)
            }
            Judged::Allow => match route(req.path()) {
                Route::Llhls { key, file } => self.llhls_allowed(token, &req, key, file),
                _ => self.http_live_allowed(token, &req, key),
            },
            Judged::Refuse(r) => self.http_access_refused(token, &req, r),
            Judged::Pending => {}
        }
        self.write_conn(token);
    }

    /// A live request that may play: an HTTP-FLV response or a WebSocket upgrade, or 404 before
    /// either.
    pub(super) fn http_live_allowed(&mut self, token: usize, req: &Request, key: StreamKey) {
        let keep_alive = req.keep_alive();
        let Some(peer) = self.conns.get(token).map(|c| c.peer) else {
            return;
        };
        if !self.core.hub.is_live(&key) {
            if self.gateway.is_some() {
                // FLV gateway: pull it from the upstream; the viewer is answered once it says.
                return self.upstream_wait(token, req, key);
            }
            debug!("HTTP {peer}: {key} is not live");
            return self.http_reply(
                token,
                response::simple(404, "Stream not found.", keep_alive),
                keep_alive,
            );
        }
        let Some(track) = flv_track(req.query()) else {
            warn!("HTTP {peer}: bad ?track= in {}", req.request_line());
            return self.http_reply(
                token,
                response::simple(400, "track must be a number from 0 to 255.", keep_alive),
                keep_alive,
            );
        };
        let upgrade = ws::is_upgrade(req);
        let head = if upgrade {
            match ws::accept_response(req) {
                Ok(h) => h,
                Err(why) => {
                    warn!("WS-FLV {peer}: {why}");
                    return self.http_reply(token, response::simple(400, why, false), false);
                }
            }
        } else {
            response::flv_head(req.version == 1)
        };
        if req.method == "HEAD" {
            return self.http_reply(token, head, false);
        }
        // Of an Opus stream, FLV players get the audio bridge's AAC unless they ask for Opus.
        let aac = !flv_wants_opus(req.query());
        let form = if upgrade {
            OutputForm::WsFlv { track, aac }
        } else {
            OutputForm::HttpFlv {
                chunked: req.version == 1,
                track,
                aac,
            }
        };
        let now_ms = self.now_ms();
        let chunked = req.version == 1;
        let req = PlayRequest {
            conn: token,
            peer: Some(peer),
            proto: if upgrade {
                Proto::WsFlv
            } else {
                Proto::HttpFlv
            },
            app: &key.app,
            name: &key.stream,
        };
        let viewer = match self.core.play(&req, form, now_ms) {
            Ok(p) => p.viewer,
            Err(why) => {
                warn!("HTTP {peer}: play of {key} refused: {why}");
                self.totals.refused += 1;
                let reply = match &why {
                    Refused::Limit(hit) => crate::server::reply::http_limit(hit),
                    _ => response::simple(403, "Forbidden.", keep_alive),
                };
                let keep_alive = keep_alive && !matches!(why, Refused::Limit(_));
                return self.http_reply(token, reply, keep_alive);
            }
        };
        if let Some(vw) = self.core.hub.viewer(viewer) {
            vw.queue.push_control(head.into());
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.head.clear();
        // Logged when the player leaves, with the bytes it was sent (`Server::close`).
        if let Some(a) = conn.access.as_mut() {
            a.status = if upgrade { 101 } else { 200 };
        }
        conn.state = if upgrade {
            ConnState::WsFlv {
                viewer,
                ws: Box::new(WsSession::new()),
            }
        } else {
            ConnState::HttpFlv { viewer, chunked }
        };
        self.core.start_viewer(viewer);
        info!(
            "{key}: {} player {peer}",
            if upgrade { "WS-FLV" } else { "HTTP-FLV" }
        );
        // The cached GOP goes out now, not at the next merged flush: time to first frame matters.
        self.write_conn(token);
    }
}

impl Server {
    /// True when `path` is one of the pages (the first root of the origin; the file gateway
    /// serves recordings only): those never need `--files-token`.
    fn is_page(&self, path: &str) -> bool {
        if self.setup.data_dir.is_none()
            && !self.setup.home_page
            && self.setup.mode == "file-gateway"
        {
            return false;
        }
        if path == "/" {
            return true;
        }
        let rel = path.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return false;
        }
        match self.setup.roots.first() {
            Some(Root::Embedded) => embedded::get(rel).is_some(),
            Some(Root::Dir(d)) if self.setup.roots.len() > 1 => d.join(rel).is_file(),
            _ => false,
        }
    }
}

/// True when the first static root (the pages) has a `home.html` to serve for `/`.
fn has_home_page(roots: &[Root]) -> bool {
    match roots.first() {
        Some(Root::Embedded) => embedded::get("home.html").is_some(),
        Some(Root::Dir(d)) => d.join("home.html").is_file(),
        None => false,
    }
}

/// The status code of a response we built (for the access log).
fn status_of(resp: &[u8]) -> u16 {
    resp.get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Body bytes of a whole response we built.
fn body_len_of(resp: &[u8]) -> u64 {
    resp.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (resp.len() - i - 4) as u64)
        .unwrap_or(0)
}

/// 405 with the Allow header every 405 must carry.
fn method_not_allowed(keep_alive: bool) -> Vec<u8> {
    let mut r = response::simple(405, "Method not allowed.", keep_alive);
    let at = r.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
    r.splice(at..at, b"Allow: GET, HEAD, OPTIONS\r\n".iter().copied());
    r
}

/// The track an FLV viewer asks for with `?track=N` (0, the default track, without it); `None`
/// for a value that is not a number from 0 to 255.
fn flv_track(query: Option<&str>) -> Option<u8> {
    match query.and_then(|q| crate::media::key::query_param(q, "track")) {
        None => Some(0),
        Some(v) if !v.is_empty() && v.len() <= 3 && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse().ok()
        }
        Some(_) => None,
    }
}

/// `?audio=opus`: the player takes Opus (mpegts.js, FFmpeg 6.1 and later), so an Opus stream's
/// audio reaches it as published rather than as the bridge's AAC. Any other value: AAC.
fn flv_wants_opus(query: Option<&str>) -> bool {
    query
        .and_then(|q| crate::media::key::query_param(q, "audio"))
        .is_some_and(|v| v.eq_ignore_ascii_case("opus"))
}

/// `/index` and what lies under it (however the path is spelled: percent-encoded, doubled
/// slashes, case on case-insensitive file systems): the recordings index's folder, never served
/// as files; and `/.tls`, where `--tls-self-signed` keeps its private key.
fn is_index_path(target: &str) -> bool {
    crate::http::path::clean_target(target).is_ok_and(|c| {
        c.segments.first().is_some_and(|s| {
            s.eq_ignore_ascii_case(crate::record::index::INDEX_DIR)
                || s.eq_ignore_ascii_case(crate::tls::selfsigned::DIR)
        })
    })
}

/// Queues a static answer (`http::files::respond`) on `conn`: its access-log status and size,
/// the head, the body in memory or as a file read as the socket drains; closed after it when the
/// request did not keep the connection alive.
pub(super) fn queue_static(
    conn: &mut super::conn::Conn,
    resp: crate::http::files::StaticResponse,
    keep_alive: bool,
) {
    if let Some(a) = &mut conn.access {
        a.status = resp.status;
        a.bytes = resp.body_len;
    }
    conn.out.push(resp.head.into());
    match resp.body {
        Body::Empty => {}
        Body::Static(data) => conn.out.push(Bytes::from_static(data)),
        Body::Owned(data) => conn.out.push(data.into()),
        Body::File { file, offset, len } => {
            conn.body = Some(FileBody {
                file,
                offset,
                remaining: len,
            });
        }
    }
    if !keep_alive {
        conn.close_after_flush = true;
    }
}

#[cfg(test)]
mod index_path_tests {
    use super::is_index_path;

    #[test]
    fn the_recordings_index_is_never_a_static_file() {
        assert!(is_index_path("/index/live/s.jsonl"));
        assert!(is_index_path("/index/"));
        assert!(is_index_path("/index"));
        assert!(is_index_path("/INDEX/live/s.jsonl"));
        assert!(is_index_path("/%69ndex/live/s.jsonl"));
        assert!(is_index_path("/index/live/s.jsonl?x=1"));
        assert!(!is_index_path("/index.html"));
        assert!(!is_index_path("/hls/live/s/index.m3u8"));
        assert!(!is_index_path("/"));
        assert!(is_index_path("/.tls/self-signed-key.pem"));
        assert!(is_index_path("/%2Etls/self-signed-key.pem"));
        assert!(is_index_path("/.TLS/"));
        assert!(!is_index_path("/tls/x"));
    }
}
