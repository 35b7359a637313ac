//! The recordings library over HTTP: `GET /api/recordings[?app=&stream=&offset=&limit=]` (what the
//! data dir holds for each stream, newest session first, as the home page and the VOD pages want
//! it), `GET /api/recordings/{app}/{stream}` (one stream's sessions), `DELETE
//! /api/recordings/{app}/{stream}/{id}` (queued to the retention thread) and `/playback/...`, on
//! the origin and the file gateway, behind `--files-token` like the files. This file routes them,
//! answers the DELETE and keeps the per-stream index read (`sessions_of`: one read per stream, on
//! the event loop like a static request, parsed once per change); the JSON is `listing.rs`, the
//! MP4 cuts `playback.rs`. It never writes recordings (`record`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use serde::Serialize;

mod listing;
mod playback;

pub use self::listing::recordings_json;
use self::listing::{stream_sessions_json, DEFAULT_SESSIONS_PAGE};
pub(super) use self::playback::Playback;
use super::Server;
use crate::codec::json;
use crate::http::files::Root;
use crate::http::request::Request;
use crate::http::response;
use crate::http::route::Route;
use crate::media::StreamKey;
use crate::record::index::{self, Session};

/// `GET /api/recordings` where there is no recordings folder at all.
#[derive(Serialize)]
struct NoRecordings {
    recordings: [(); 0],
}

/// The answer to a `DELETE /api/recordings/{app}/{stream}/{id}` that was queued.
#[derive(Serialize)]
struct Deleting<'a> {
    deleting: &'a str,
    app: &'a str,
    stream: &'a str,
}

/// The session of a `DELETE /api/recordings/{app}/{stream}/{id}`, as the index has it now.
pub fn find_session(data: &Path, key: &StreamKey, id: &str) -> Option<Session> {
    sessions_of(data, key, false)?
        .iter()
        .find(|s| s.id == id)
        .cloned()
}

/// Index files parsed by this (the loop's) thread, by path: (length, modification time, sessions).
type Parsed = (u64, SystemTime, Rc<Vec<Session>>);

thread_local! {
    static PARSED: RefCell<HashMap<PathBuf, Parsed>> = RefCell::new(HashMap::new());
}

/// Index files kept parsed at most: a 10,000-session index is parsed in ~70 ms (release build), the
/// answer from a kept one in a few.
const PARSED_MAX: usize = 64;

/// The sessions of `key` from its index, oldest first (from its folders when it has no index); `None`
/// when it has none. A file that has not changed since it was last parsed (same length and modification
/// time: appends and rewrites change both) is not parsed again.
pub fn sessions_of(data: &Path, key: &StreamKey, or_scan: bool) -> Option<Rc<Vec<Session>>> {
    let path = index::index_path(data, key);
    let Ok(meta) = fs::metadata(&path) else {
        if !or_scan {
            return None;
        }
        // No index: recordings made before there was one (a file gateway on an older origin's data
        // dir); the newest 1000 sessions are read from their folders (a playlist and a meta.json
        // each, sizes not measured), as `/api/recordings` always walked them. The origin rebuilds
        // its indexes at start, so this is never its own case.
        let found = index::scan_light(data, key, DEFAULT_SESSIONS_PAGE);
        return (!found.is_empty()).then(|| Rc::new(found));
    };
    let stamp = (
        meta.len(),
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    );
    if let Some(hit) = PARSED.with(|c| {
        c.borrow()
            .get(&path)
            .filter(|(l, t, _)| (*l, *t) == stamp)
            .map(|(_, _, s)| s.clone())
    }) {
        return Some(hit);
    }
    let loaded = index::load_stream(data, key).ok()??;
    let sessions = Rc::new(loaded.sessions);
    PARSED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= PARSED_MAX {
            c.clear();
        }
        c.insert(path, (stamp.0, stamp.1, sessions.clone()));
    });
    Some(sessions)
}

/// Routes the file gateway answers from its root's index (everything else there is a file).
pub fn gateway_route(route: &Route) -> bool {
    matches!(
        route,
        Route::ApiRecordings | Route::ApiRecordingsOf { session: None, .. } | Route::Playback(_)
    )
}

impl Server {
    /// Where the recordings are: the origin's data dir, or the file gateway's root.
    pub(super) fn recordings_root(&self) -> Option<PathBuf> {
        if let Some(d) = &self.setup.data_dir {
            return Some(d.clone());
        }
        match self.setup.roots.first() {
            Some(Root::Dir(d)) if self.setup.mode == "file-gateway" => Some(d.clone()),
            _ => None,
        }
    }

    fn reply_text(&mut self, token: usize, req: &Request, status: u16, ctype: &str, body: &str) {
        let keep_alive = req.keep_alive();
        let reply = response::text(status, ctype, body, keep_alive, req.method == "HEAD");
        self.http_reply(token, reply, keep_alive);
    }

    /// The `--files-token` check a recording's file gets (the listing names them). True when allowed;
    /// a refusal is answered here.
    pub(super) fn recordings_files_allowed(&mut self, token: usize, req: &Request) -> bool {
        let Some(peer) = self.conns.get(token).map(|c| c.peer) else {
            return false;
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
            log::warn!("{}", crate::access::log_line(&areq, &r));
            self.http_access_refused(token, req, &r);
            return false;
        }
        true
    }

    /// The file gateway's `/api/recordings[/{app}/{stream}]` and `/playback/...`: GET and HEAD only,
    /// behind `--files-token` like the files themselves.
    pub(super) fn http_recordings_gateway(&mut self, token: usize, req: &Request, route: Route) {
        if req.method == "OPTIONS" {
            let keep_alive = req.keep_alive();
            return self.http_reply(token, response::options(keep_alive), keep_alive);
        }
        if req.method != "GET" && req.method != "HEAD" {
            return self.reply_text(token, req, 404, "text/plain", "Not found.");
        }
        if !self.recordings_files_allowed(token, req) {
            return;
        }
        match route {
            Route::ApiRecordings => {
                let body = match self.recordings_root() {
                    Some(dir) => recordings_json(&dir, req.query().unwrap_or("")),
                    None => json::to_string(&NoRecordings { recordings: [] }),
                };
                self.reply_text(token, req, 200, "application/json", &body);
            }
            Route::ApiRecordingsOf { key, session } => {
                self.http_recordings_of(token, req, key, session)
            }
            Route::Playback(key) => self.http_playback_allowed(token, req, key),
            _ => self.reply_text(token, req, 404, "text/plain", "Not found."),
        }
    }

    /// `GET /api/recordings/{app}/{stream}` (its sessions) and `DELETE /api/recordings/{app}/{stream}/{id}`
    /// (queued to the retention thread: 202; never a live session: 409). The API token was checked.
    pub(super) fn http_recordings_of(
        &mut self,
        token: usize,
        req: &Request,
        key: StreamKey,
        session: Option<String>,
    ) {
        let Some(dir) = self.recordings_root() else {
            return self.reply_text(token, req, 404, "text/plain", "No recordings here.");
        };
        let peer = self.conns.get(token).map(|c| c.peer);
        if req.method != "DELETE" {
            if session.is_some() {
                return self.reply_text(
                    token,
                    req,
                    404,
                    "text/plain",
                    "A session is listed by its stream: GET /api/recordings/{app}/{stream}.",
                );
            }
            return match stream_sessions_json(&dir, &key, req.query().unwrap_or("")) {
                Some(body) => self.reply_text(token, req, 200, "application/json", &body),
                None => self.reply_text(
                    token,
                    req,
                    404,
                    "text/plain",
                    "No recordings of that stream.",
                ),
            };
        }
        let Some(id) = session else {
            return self.reply_text(token, req, 404, "text/plain", "Not found.");
        };
        if !self.core.access.api_protected() {
            log::warn!("HTTP {peer:?}: DELETE {key} session {id} refused: no --api-token is set");
            self.totals.refused += 1;
            return self.reply_text(
                token,
                req,
                403,
                "text/plain",
                "Deleting recordings needs the server to run with --api-token.",
            );
        }
        let Some(s) = find_session(&dir, &key, &id) else {
            return self.reply_text(token, req, 404, "text/plain", "No such session.");
        };
        if s.live() {
            return self.reply_text(
                token,
                req,
                409,
                "text/plain",
                "That session is live: it can be deleted once it has ended.",
            );
        }
        let queued = self
            .core
            .keeper()
            .map(|k| k.delete(key.clone(), id.clone()));
        match queued {
            Some(Ok(())) => {
                log::info!("HTTP {peer:?}: deleting {key} session {id}");
                let body = json::to_string(&Deleting {
                    deleting: &id,
                    app: &key.app,
                    stream: &key.stream,
                });
                self.reply_text(token, req, 202, "application/json", &body)
            }
            _ => self.reply_text(
                token,
                req,
                503,
                "text/plain",
                "The recordings keeper is busy; try again.",
            ),
        }
    }
}
