//! Glue from HTTP requests to responses and viewers on the HTTP port: live HTTP-FLV and WS-FLV
//! viewers, the API, CORS preflight; keep-alive and pipelined requests for everything else.

use bytes::Buf;
use log::{debug, info, warn};

use super::conn::ConnState;
use super::Server;
use crate::http::request::{self, Request, MAX_HEAD};
use crate::http::response;
use crate::http::route::{route, Route};
use crate::http::ws::{self, WsInputEvent, WsSession};
use crate::hub::OutputForm;
use crate::media::StreamKey;

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
                if conn.head.len() + data.len() > 2 * MAX_HEAD {
                    // Pipelined requests piling up behind a body, or one endless head.
                    let peer = conn.peer;
                    warn!(
                        "HTTP {peer}: more than {} bytes of request heads pending; closing",
                        2 * MAX_HEAD
                    );
                    if conn.body.is_some() {
                        self.close(token, "request flood");
                    } else {
                        self.http_refuse(token, 431, "Too many pending request bytes.");
                        self.write_conn(token);
                    }
                    return;
                }
                conn.head.extend_from_slice(data);
                self.http_parse(token);
            }
            // A live viewer has nothing more to say; what it sends is dropped.
            ConnState::HttpFlv { .. } => {}
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
                || !matches!(conn.state, ConnState::HttpHead { .. })
            {
                break;
            }
            match request::parse(&conn.head) {
                Ok(Some((req, len))) => {
                    conn.head.advance(len);
                    if let ConnState::HttpHead { served } = &mut conn.state {
                        *served += 1;
                    }
                    self.http_request(token, req);
                }
                Ok(None) => {
                    if conn.head.len() > MAX_HEAD {
                        self.http_refuse(token, 431, "Request header fields too large.");
                    }
                    break;
                }
                Err(e) => {
                    let peer = conn.peer;
                    warn!("HTTP {peer}: {e}; answering {}", e.status());
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

    fn http_reply(&mut self, token: usize, bytes: Vec<u8>, keep_alive: bool) {
        if let Some(conn) = self.conns.get_mut(token) {
            conn.out.push(bytes.into());
            if !keep_alive {
                conn.close_after_flush = true;
            }
        }
    }

    fn http_request(&mut self, token: usize, req: Request) {
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        if req.method == "OPTIONS" {
            return self.http_reply(token, response::options(keep_alive), keep_alive);
        }
        if req.method != "GET" && !head_only {
            let peer = self.conns.get(token).map(|c| c.peer);
            warn!("HTTP {peer:?}: method {} not allowed", req.method);
            let mut r = response::simple(405, "Method not allowed.", keep_alive);
            // Allow goes with every 405.
            let at = r.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
            r.splice(at..at, b"Allow: GET, HEAD, OPTIONS\r\n".iter().copied());
            return self.http_reply(token, r, keep_alive);
        }
        match route(req.path()) {
            Route::LiveFlv(key) => self.http_live(token, &req, key),
            Route::ApiStreams => {
                let body = self.api_streams();
                self.http_reply(
                    token,
                    response::text(200, "application/json", &body, keep_alive, head_only),
                    keep_alive,
                )
            }
            Route::ApiServer => {
                let body = self.api_server();
                self.http_reply(
                    token,
                    response::text(200, "application/json", &body, keep_alive, head_only),
                    keep_alive,
                )
            }
            Route::Metrics => {
                let body = self.metrics();
                let ct = "text/plain; version=0.0.4; charset=utf-8";
                self.http_reply(
                    token,
                    response::text(200, ct, &body, keep_alive, head_only),
                    keep_alive,
                )
            }
            Route::Static => self.http_reply(
                token,
                response::simple(404, "Not found.", keep_alive),
                keep_alive,
            ),
        }
    }

    /// `/{app}/{stream}.flv`: an HTTP-FLV response or a WebSocket upgrade, or 404 before either.
    fn http_live(&mut self, token: usize, req: &Request, key: StreamKey) {
        let keep_alive = req.keep_alive();
        let Some(peer) = self.conns.get(token).map(|c| c.peer) else {
            return;
        };
        if !self.hub.is_live(&key) {
            debug!("HTTP {peer}: {key} is not live");
            return self.http_reply(
                token,
                response::simple(404, "Stream not found.", keep_alive),
                keep_alive,
            );
        }
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
        let form = if upgrade {
            OutputForm::WsFlv
        } else {
            OutputForm::HttpFlv {
                chunked: req.version == 1,
            }
        };
        let now_ms = self.now_ms();
        let (viewer, _) = self.hub.add_viewer(&key, form, token, now_ms);
        if let Some(vw) = self.hub.viewer(viewer) {
            vw.queue.push_control(head.into());
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.head.clear();
        conn.state = if upgrade {
            ConnState::WsFlv {
                viewer,
                ws: Box::new(WsSession::new()),
            }
        } else {
            ConnState::HttpFlv {
                viewer,
                chunked: req.version == 1,
            }
        };
        self.hub.start_viewer(viewer);
        info!(
            "{key}: {} player {peer}",
            if upgrade { "WS-FLV" } else { "HTTP-FLV" }
        );
        // The cached GOP goes out now, not at the next merged flush: time to first frame matters.
        self.write_conn(token);
    }
}
