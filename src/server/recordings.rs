//! `GET /api/recordings[?app=&stream=&offset=&limit=]`: what the data dir holds for each stream,
//! newest session first, as the home page and the VOD pages want it; `GET /api/recordings/{app}/{stream}`:
//! one stream's sessions. Both read the per-stream index (`record::index`: one read per stream, on the
//! event loop like a static request); a stream without an index yet (a data dir from an older version)
//! falls back to a directory walk with hard caps, names filtered by the stream-name rule so nothing but
//! our own layout is ever listed. Every answer is a struct below written by serde_json
//! (`codec::json`), keys in the order the pages have always read them.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::SystemTime;

use super::conn::ConnState;
use super::Server;
use crate::codec::json;
use crate::http::files::{Found, Root, Source, StaticRequest};
use crate::http::request::Request;
use crate::http::response;
use crate::http::route::Route;
use crate::media::key::query_param;
use crate::media::StreamKey;
use crate::mux::hls::format_iso8601;
use crate::record::cut::CutError;
use crate::record::index::{self, Session};
use crate::record::paths::is_session_name as is_session;

/// At most this many streams and this many entries per folder are listed.
const MAX_STREAMS: usize = 1000;
const MAX_ENTRIES: usize = 2000;

fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .flatten()
        .take(MAX_ENTRIES)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

/// One fMP4 session folder of a stream in `/api/recordings` (`session` is "current" for the stream's
/// own folder); a file not there (yet) is `null`.
#[derive(Serialize)]
struct Mp4Files {
    session: String,
    merged: Option<String>,
    muxed: Option<String>,
    separate: Option<String>,
}

/// One stream in `/api/recordings`: the URLs of its files, newest session first. `sessions` and
/// `size` come from its index; a stream listed by walking its folders has neither key.
#[derive(Serialize)]
struct StreamFiles<'a> {
    app: &'a str,
    stream: &'a str,
    flv: Vec<String>,
    hls: Vec<String>,
    mp4: Vec<Mp4Files>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
}

/// `GET /api/recordings`: one page of streams, `total` counting them all.
#[derive(Serialize)]
struct RecordingsDoc<'a> {
    recordings: Vec<StreamFiles<'a>>,
    total: usize,
    offset: usize,
    limit: usize,
}

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

fn url_if(path: &Path, url: String) -> Option<String> {
    path.is_file().then_some(url)
}

/// A stream without an index, from a walk of its folders.
fn stream_walked<'a>(data: &Path, app: &'a str, stream: &'a str) -> StreamFiles<'a> {
    let flv_dir = data.join("flv").join(app).join(stream);
    let mut flv: Vec<String> = fs::read_dir(&flv_dir)
        .map(|rd| {
            rd.flatten()
                .take(MAX_ENTRIES)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.strip_suffix(".flv").is_some_and(is_session))
                .collect()
        })
        .unwrap_or_default();
    flv.sort();
    flv.reverse();
    let flv: Vec<String> = flv
        .iter()
        .map(|f| format!("/flv/{app}/{stream}/{f}"))
        .collect();

    let hls_dir = data.join("hls").join(app).join(stream);
    let mut hls = Vec::new();
    if hls_dir.join("index.m3u8").is_file() {
        hls.push(format!("/hls/{app}/{stream}/index.m3u8"));
    }
    for s in subdirs(&hls_dir).iter().rev().filter(|s| is_session(s)) {
        if hls_dir.join(s).join("index.m3u8").is_file() {
            hls.push(format!("/hls/{app}/{stream}/{s}/index.m3u8"));
        }
    }

    let mp4_dir = data.join("mp4").join(app).join(stream);
    let mut mp4 = Vec::new();
    let sessions = std::iter::once(None).chain(
        subdirs(&mp4_dir)
            .into_iter()
            .rev()
            .filter(|s| is_session(s))
            .map(Some),
    );
    for s in sessions {
        let (local, base, name) = match &s {
            None => (
                mp4_dir.clone(),
                format!("/mp4/{app}/{stream}/"),
                "current".to_string(),
            ),
            Some(s) => (
                mp4_dir.join(s),
                format!("/mp4/{app}/{stream}/{s}/"),
                s.clone(),
            ),
        };
        let (merge, separate) = (local.join("output_merge"), local.join("output_separate"));
        if !merge.is_dir() && !separate.is_dir() {
            continue;
        }
        mp4.push(Mp4Files {
            session: name,
            merged: url_if(
                &merge.join("stream_full.mp4"),
                format!("{base}output_merge/stream_full.mp4"),
            ),
            muxed: url_if(
                &merge.join("index.m3u8"),
                format!("{base}output_merge/index.m3u8"),
            ),
            separate: url_if(
                &separate.join("master.m3u8"),
                format!("{base}output_separate/master.m3u8"),
            ),
        });
    }
    StreamFiles {
        app,
        stream,
        flv,
        hls,
        mp4,
        sessions: None,
        size: None,
    }
}

/// The same entry for a stream with an index: its sessions' files, newest first.
fn stream_indexed<'a>(app: &'a str, stream: &'a str, sessions: &[Session]) -> StreamFiles<'a> {
    let mut flv = Vec::new();
    let mut hls = Vec::new();
    let mut mp4 = Vec::new();
    for s in sessions.iter().rev() {
        let u = urls(s);
        flv.extend(u.flv);
        hls.extend(u.hls);
        if let Some(dir) = &s.mp4 {
            let name = if dir.rsplit('/').next().is_some_and(is_session) {
                s.id.clone()
            } else {
                "current".to_string()
            };
            mp4.push(Mp4Files {
                session: name,
                merged: u.mp4,
                muxed: u.fmp4,
                separate: u.separate,
            });
        }
    }
    StreamFiles {
        app,
        stream,
        flv,
        hls,
        mp4,
        sessions: Some(sessions.len()),
        size: Some(sessions.iter().map(|s| s.size).sum()),
    }
}

/// Paging of a list: `offset` (default 0) and `limit` (default and cap `max`).
pub fn paging(query: &str, default: usize, max: usize) -> (usize, usize) {
    let num = |k: &str| query_param(query, k).and_then(|v| v.parse::<usize>().ok());
    let offset = num("offset").unwrap_or(0);
    let limit = num("limit").unwrap_or(default).clamp(1, max);
    (offset, limit)
}

/// The JSON body of `GET /api/recordings`; `app`/`stream` narrow the list, `offset`/`limit` page it
/// (by stream, at most 1000 a page; `total` counts them all).
pub fn recordings_json(data: &Path, query: &str) -> String {
    let (only_app, only_stream) = (query_param(query, "app"), query_param(query, "stream"));
    let (offset, limit) = paging(query, MAX_STREAMS, MAX_STREAMS);
    let keys: Vec<StreamKey> = index::all_streams(data)
        .into_iter()
        .filter(|k| only_app.is_none_or(|a| a == k.app))
        .filter(|k| only_stream.is_none_or(|s| s == k.stream))
        .collect();
    let recordings = keys
        .iter()
        .skip(offset)
        .take(limit)
        .map(|key| match sessions_of(data, key, false) {
            Some(l) => stream_indexed(&key.app, &key.stream, &l),
            // Without an index: the walk this listing always did, in its own shape.
            None => stream_walked(data, &key.app, &key.stream),
        })
        .collect();
    json::to_string(&RecordingsDoc {
        recordings,
        total: keys.len(),
        offset,
        limit,
    })
}

/// Where a session's files play from (URL paths on this server).
#[derive(Debug, Default, Serialize)]
pub struct Urls {
    pub flv: Option<String>,
    /// Its MPEG-TS playlist (ENDLIST once it is over).
    pub hls: Option<String>,
    /// `stream_full.mp4`.
    pub mp4: Option<String>,
    /// The muxed fMP4 playlist.
    pub fmp4: Option<String>,
    /// The per-track fMP4 master playlist.
    pub separate: Option<String>,
}

/// The URLs of a session. Only the merged MP4 is not certain to exist (it is built when the session
/// ends): it is named once the session has ended.
pub fn urls(s: &Session) -> Urls {
    let url = |rel: &str, tail: &str| format!("/{rel}/{tail}");
    Urls {
        flv: s.flv.as_ref().map(|f| format!("/{f}")),
        hls: s.hls.as_ref().map(|h| url(h, "index.m3u8")),
        mp4: s
            .mp4
            .as_ref()
            .filter(|_| !s.live())
            .map(|m| url(m, "output_merge/stream_full.mp4")),
        fmp4: s.mp4.as_ref().map(|m| url(m, "output_merge/index.m3u8")),
        separate: s
            .mp4
            .as_ref()
            .map(|m| url(m, "output_separate/master.m3u8")),
    }
}

/// One session as `GET /api/recordings/{app}/{stream}` lists it.
#[derive(Serialize)]
struct SessionDoc<'a> {
    id: &'a str,
    start: String,
    end: Option<String>,
    start_ms: i64,
    end_ms: Option<i64>,
    duration_ms: u64,
    size: u64,
    codecs: &'a [String],
    live: bool,
    #[serde(flatten)]
    urls: Urls,
    /// The whole session cut from the fMP4 segments (`/playback/...`), when it has them.
    playback: Option<String>,
    /// The bucket that holds all its files (`--upload`), once they are all stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<&'a str>,
}

#[derive(Serialize)]
struct StreamDoc<'a> {
    app: &'a str,
    stream: &'a str,
    total: usize,
    offset: usize,
    limit: usize,
    size: u64,
    sessions: Vec<SessionDoc<'a>>,
}

/// Sessions listed per page at most, and without `limit`: the index is read on the event loop, like a
/// static file, and the answer built there (10,000 sessions: 6 MB of JSON).
pub const MAX_SESSIONS_PAGE: usize = 10_000;
pub const DEFAULT_SESSIONS_PAGE: usize = 1000;

/// `GET /api/recordings/{app}/{stream}[?offset=&limit=]`: its sessions, newest first, from its index
/// (rebuilt from the folders by the recorders when missing; `None` when it has none: 404).
pub fn stream_sessions_json(data: &Path, key: &StreamKey, query: &str) -> Option<String> {
    let sessions = sessions_of(data, key, true)?;
    let (offset, limit) = paging(query, DEFAULT_SESSIONS_PAGE, MAX_SESSIONS_PAGE);
    let docs = sessions
        .iter()
        .rev()
        .skip(offset)
        .take(limit)
        .map(|s| SessionDoc {
            id: &s.id,
            start: format_iso8601(s.start_ms),
            end: s.end_ms.map(format_iso8601),
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            duration_ms: s.duration_ms,
            size: s.size,
            codecs: &s.codecs,
            live: s.live(),
            urls: urls(s),
            playback: s.mp4.as_ref().filter(|_| !s.live()).map(|_| {
                format!(
                    "/playback/{}/{}.mp4?start={}&duration={}",
                    key.app,
                    key.stream,
                    format_iso8601(s.start_ms),
                    s.duration_ms.div_ceil(1000).max(1)
                )
            }),
            remote: s.remote.as_deref(),
        })
        .collect();
    let doc = StreamDoc {
        app: &key.app,
        stream: &key.stream,
        total: sessions.len(),
        offset,
        limit,
        size: sessions.iter().map(|s| s.size).sum(),
        sessions: docs,
    };
    Some(json::to_string(&doc))
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

    /// `/playback/{app}/{stream}.mp4` on the origin: `--files-token` first, like the files it cuts.
    pub(super) fn http_playback(&mut self, token: usize, req: &Request, key: StreamKey) {
        if self.recordings_files_allowed(token, req) {
            self.http_playback_allowed(token, req, key);
        }
    }

    /// Parses the range, picks the sessions from the index and queues the cut; the connection waits
    /// (input not read) until `playback_done` answers it. A cut made in the last minute is served at once.
    pub(super) fn http_playback_allowed(&mut self, token: usize, req: &Request, key: StreamKey) {
        let query = req.query().unwrap_or("");
        let Some(start_ms) = query_param(query, "start")
            .map(percent_decoded)
            .and_then(|s| parse_rfc3339(&s))
        else {
            return self.reply_text(
                token,
                req,
                400,
                "text/plain",
                "start must be an RFC 3339 time, e.g. 2026-12-07T11:00:00Z.",
            );
        };
        let max_secs = crate::record::cut::MAX_DURATION_MS / 1000;
        let Some(duration_ms) = query_param(query, "duration")
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite() && *d > 0.0 && *d <= max_secs as f64)
            .map(|d| (d * 1000.0).round() as u64)
        else {
            let why = format!("duration must be a number of seconds from 0 to {max_secs}.");
            return self.reply_text(token, req, 400, "text/plain", &why);
        };
        let fragmented = match query_param(query, "format") {
            None | Some("mp4") => false,
            Some("fmp4") => true,
            Some(_) => {
                return self.reply_text(token, req, 400, "text/plain", "format is mp4 or fmp4.")
            }
        };
        let Some(dir) = self.recordings_root() else {
            return self.reply_text(token, req, 404, "text/plain", "No recordings here.");
        };
        let cache_key = (key.to_string(), start_ms, duration_ms, fragmented);
        let now = self.now;
        if let Some(p) = &mut self.playback {
            p.cache
                .retain(|c| now.duration_since(c.made) < CUT_CACHE_FOR);
            let hit = p
                .cache
                .iter()
                .find(|c| c.key == cache_key)
                .and_then(|c| Some((c.file.try_clone().ok()?, c.len, c.first_ms)));
            if let Some((file, len, first_ms)) = hit {
                return self.send_cut(token, req, file, len, first_ms);
            }
        }
        let end_ms = start_ms.saturating_add(duration_ms as i64);
        let sessions: Vec<Session> = match sessions_of(&dir, &key, true) {
            Some(l) => l
                .iter()
                .filter(|s| s.mp4.is_some() && s.start_ms < end_ms)
                .filter(|s| s.media_end_ms().is_none_or(|e| e > start_ms))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        if sessions.is_empty() {
            return self.reply_text(
                token,
                req,
                404,
                "text/plain",
                "No fMP4 recording of that stream in that range.",
            );
        }
        if self.playback.is_none() {
            let waker = self.waker.clone();
            let wake: crate::record::cut::Wake = std::sync::Arc::new(move || {
                let _ = waker.wake();
            });
            match crate::record::cut::CutWorker::start(wake) {
                Ok(worker) => {
                    self.playback = Some(Playback {
                        worker,
                        next_id: 1,
                        waiting: HashMap::new(),
                        cache: Vec::new(),
                    })
                }
                Err(e) => {
                    log::error!("cannot start the playback cutter: {e}");
                    return self.reply_text(
                        token,
                        req,
                        503,
                        "text/plain",
                        "Playback is unavailable.",
                    );
                }
            }
        }
        let Some(p) = self.playback.as_mut() else {
            return;
        };
        let id = p.next_id;
        p.next_id += 1;
        let job = crate::record::cut::CutRequest {
            data_dir: dir,
            sessions,
            start_ms,
            duration_ms,
            fragmented,
            remote: self.setup.remote.clone(),
        };
        if !p.worker.submit(token, id, job) {
            self.totals.bound("playback-queue");
            return self.reply_text(
                token,
                req,
                503,
                "text/plain",
                "Too many playback cuts at once; try again.",
            );
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        p.waiting.insert(token, (id, cache_key, conn.created));
        conn.judging = true;
        conn.state = ConnState::Judging {
            key,
            req: Box::new(req.clone()),
        };
    }

    /// Answers the connections whose cut is done (the cutter woke the loop).
    pub(super) fn playback_done(&mut self) {
        loop {
            let Some(p) = self.playback.as_mut() else {
                return;
            };
            let Some(done) = p.worker.poll() else {
                return;
            };
            let Some((id, cache_key, created)) = p.waiting.remove(&done.token) else {
                continue;
            };
            if id != done.id {
                // The connection went and its slot was reused by another cut: not this answer.
                p.waiting.insert(done.token, (id, cache_key, created));
                continue;
            }
            let Some(conn) = self.conns.get_mut(done.token) else {
                continue;
            };
            // Another connection in the slot of one that went: not its answer.
            if conn.closed || !conn.judging || conn.created != created {
                continue;
            }
            let ConnState::Judging { req, .. } =
                std::mem::replace(&mut conn.state, ConnState::HttpHead { served: 1 })
            else {
                continue;
            };
            conn.judging = false;
            let peer = conn.peer;
            match done.result {
                Ok(out) => {
                    if let Ok(copy) = out.file.try_clone() {
                        p.cache.push(CachedCut {
                            key: cache_key,
                            file: copy,
                            len: out.len,
                            first_ms: out.first_ms,
                            made: self.now,
                        });
                        if p.cache.len() > CUT_CACHE_LEN {
                            p.cache.remove(0);
                        }
                    }
                    log::info!(
                        "playback {peer}: {} ({} bytes, {} ms from {})",
                        req.path(),
                        out.len,
                        out.duration_ms,
                        format_iso8601(out.first_ms)
                    );
                    self.send_cut(done.token, &req, out.file, out.len, out.first_ms);
                }
                Err(CutError::Empty) => self.reply_text(
                    done.token,
                    &req,
                    404,
                    "text/plain",
                    "No recorded media in that range.",
                ),
                Err(CutError::Io(e)) => {
                    log::error!("playback {peer}: {}: {e}", req.path());
                    self.reply_text(
                        done.token,
                        &req,
                        500,
                        "text/plain",
                        "The cut failed; see the server log.",
                    )
                }
            }
            // Input that came while it waited (a pipelined request) is read now.
            self.pending_read.push(done.token);
            self.pending_parse.push(done.token);
            self.write_conn(done.token);
        }
    }

    /// Serves a finished cut like a static file: Range, HEAD, ETag from its size and first frame.
    fn send_cut(
        &mut self,
        token: usize,
        req: &Request,
        file: std::fs::File,
        len: u64,
        first_ms: i64,
    ) {
        let sreq = StaticRequest {
            method: &req.method,
            target: &req.target,
            range: req.header("range"),
            if_none_match: req.header("if-none-match"),
            if_modified_since: req.header("if-modified-since"),
            keep_alive: req.keep_alive(),
        };
        let mtime = crate::record::paths::from_unix_ms(first_ms);
        let mut file = Some(file);
        let resp = crate::http::files::respond(
            &[Root::Dir(PathBuf::from("."))],
            &sreq,
            &super::fs::origin_policy(false),
            SystemTime::now(),
            |_, _, _| match file.take() {
                Some(f) => Ok(Found::File {
                    source: Source::Disk(f),
                    len,
                    mtime,
                    name: "playback.mp4".into(),
                }),
                None => Err(crate::http::path::Refusal::NotFound),
            },
        );
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        super::http::queue_static(conn, resp, sreq.keep_alive);
    }
}

/// Finished cuts kept for Range requests that follow (players ask in pieces).
const CUT_CACHE_LEN: usize = 4;
const CUT_CACHE_FOR: std::time::Duration = std::time::Duration::from_secs(60);

type CutKey = (String, i64, u64, bool);

struct CachedCut {
    key: CutKey,
    file: std::fs::File,
    len: u64,
    first_ms: i64,
    made: std::time::Instant,
}

/// The loop's side of playback cuts: the cutter thread, who waits for which cut, recent cuts.
pub(super) struct Playback {
    worker: crate::record::cut::CutWorker,
    next_id: u64,
    /// Connection -> (cut id, what it cut, when the connection was accepted).
    waiting: HashMap<usize, (u64, CutKey, std::time::Instant)>,
    cache: Vec<CachedCut>,
}

/// `%3A` and friends decoded (a browser's URLSearchParams encodes the colons of a time); `+` is a plus.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An RFC 3339 time (`2026-12-07T11:00:00Z`, `...T12:00:00.5+01:00`) as Unix ms.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.ends_with('Z') || s.ends_with('z') {
        return crate::mux::hls::parse_iso8601(&format!("{}Z", &s[..s.len() - 1]));
    }
    let (base, sign, off) = match s
        .len()
        .checked_sub(6)
        .and_then(|i| s.get(i..).map(|o| (i, o)))
    {
        Some((i, o)) if (o.starts_with('+') || o.starts_with('-')) && o.as_bytes()[3] == b':' => {
            (&s[..i], if o.starts_with('-') { -1 } else { 1 }, &o[1..])
        }
        _ => return None,
    };
    let h: i64 = off.get(..2)?.parse().ok()?;
    let m: i64 = off.get(3..)?.parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    let t = crate::mux::hls::parse_iso8601(&format!("{base}Z"))?;
    Some(t - sign * (h * 3600 + m * 60) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_and_percent_escapes() {
        let z = parse_rfc3339("2026-12-07T11:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-12-07T12:00:00+01:00"), Some(z));
        assert_eq!(parse_rfc3339("2026-12-07T10:30:00-00:30"), Some(z));
        assert_eq!(parse_rfc3339("2026-12-07T11:00:00.250Z"), Some(z + 250));
        for bad in [
            "",
            "2026-12-07",
            "2026-12-07T11:00:00",
            "2026-12-07T11:00:00+1:00",
            "x+01:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(
            percent_decoded("2026-12-07T11%3A00%3a00Z"),
            "2026-12-07T11:00:00Z"
        );
        assert_eq!(percent_decoded("%E9%"), "\u{fffd}%");
        assert_eq!(percent_decoded("é%zz%4"), "é%zz%4");
    }

    #[test]
    fn session_names() {
        for good in ["20261124_011500", "20261124_011500_1", "20261124_011500_12"] {
            assert!(is_session(good), "{good}");
        }
        for bad in [
            "20261124-011500",
            "2026112_011500",
            "20261124_011500_",
            "20261124_011500x",
            "..",
            "output_merge",
        ] {
            assert!(!is_session(bad), "{bad}");
        }
    }

    #[test]
    fn indexed_listing_keeps_its_keys_and_order() {
        let dir = crate::testutil::temp_dir("rec-api-index");
        let key = StreamKey::new("live", "cam").unwrap();
        let old = Session {
            id: "20261124_010000".into(),
            start_ms: 1_764_000_000_000,
            end_ms: Some(1_764_000_004_000),
            duration_ms: 4000,
            size: 300,
            codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
            flv: Some("flv/live/cam/20261124_010000.flv".into()),
            hls: Some("hls/live/cam/20261124_010000".into()),
            mp4: Some("mp4/live/cam/20261124_010000".into()),
            remote: Some("s3://recs/pre".into()),
            local_size: None,
        };
        let live = Session {
            id: "20261124_020000".into(),
            start_ms: 1_764_003_600_000,
            size: 7,
            hls: Some("hls/live/cam".into()),
            mp4: Some("mp4/live/cam".into()),
            ..Session::default()
        };
        index::rewrite(&dir, &key, &[old, live]).unwrap();
        // Byte for byte what the pages have read since the library landed (newest first, the live
        // session's folder named "current", its merged MP4 not named until it ends).
        assert_eq!(
            recordings_json(&dir, ""),
            r#"{"recordings":[{"app":"live","stream":"cam","flv":["/flv/live/cam/20261124_010000.flv"],"hls":["/hls/live/cam/index.m3u8","/hls/live/cam/20261124_010000/index.m3u8"],"mp4":[{"session":"current","merged":null,"muxed":"/mp4/live/cam/output_merge/index.m3u8","separate":"/mp4/live/cam/output_separate/master.m3u8"},{"session":"20261124_010000","merged":"/mp4/live/cam/20261124_010000/output_merge/stream_full.mp4","muxed":"/mp4/live/cam/20261124_010000/output_merge/index.m3u8","separate":"/mp4/live/cam/20261124_010000/output_separate/master.m3u8"}],"sessions":2,"size":307}],"total":1,"offset":0,"limit":1000}"#
        );
        assert_eq!(
            stream_sessions_json(&dir, &key, "limit=5").unwrap(),
            r#"{"app":"live","stream":"cam","total":2,"offset":0,"limit":5,"size":307,"sessions":[{"id":"20261124_020000","start":"2025-11-24T17:00:00.000Z","end":null,"start_ms":1764003600000,"end_ms":null,"duration_ms":0,"size":7,"codecs":[],"live":true,"flv":null,"hls":"/hls/live/cam/index.m3u8","mp4":null,"fmp4":"/mp4/live/cam/output_merge/index.m3u8","separate":"/mp4/live/cam/output_separate/master.m3u8","playback":null},{"id":"20261124_010000","start":"2025-11-24T16:00:00.000Z","end":"2025-11-24T16:00:04.000Z","start_ms":1764000000000,"end_ms":1764000004000,"duration_ms":4000,"size":300,"codecs":["avc1.64001f","mp4a.40.2"],"live":false,"flv":"/flv/live/cam/20261124_010000.flv","hls":"/hls/live/cam/20261124_010000/index.m3u8","mp4":"/mp4/live/cam/20261124_010000/output_merge/stream_full.mp4","fmp4":"/mp4/live/cam/20261124_010000/output_merge/index.m3u8","separate":"/mp4/live/cam/20261124_010000/output_separate/master.m3u8","playback":"/playback/live/cam.mp4?start=2025-11-24T16:00:00.000Z&duration=4","remote":"s3://recs/pre"}]}"#
        );
        assert_eq!(
            stream_sessions_json(&dir, &StreamKey::new("live", "x").unwrap(), ""),
            None
        );
        assert_eq!(
            json::to_string(&NoRecordings { recordings: [] }),
            r#"{"recordings":[]}"#
        );
        let d = Deleting {
            deleting: "20261124_010000",
            app: "live",
            stream: "a\"b",
        };
        assert_eq!(
            json::to_string(&d),
            r#"{"deleting":"20261124_010000","app":"live","stream":"a\"b"}"#
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lists_sessions_newest_first() {
        let dir = crate::testutil::temp_dir("rec-api");
        let s = dir.join("flv/live/cam");
        fs::create_dir_all(&s).unwrap();
        fs::write(s.join("20261124_010000.flv"), b"x").unwrap();
        fs::write(s.join("20261124_020000.flv"), b"x").unwrap();
        fs::write(s.join("notes.txt"), b"x").unwrap();
        let h = dir.join("hls/live/cam");
        fs::create_dir_all(h.join("20261124_010000")).unwrap();
        fs::write(h.join("index.m3u8"), b"#EXTM3U").unwrap();
        fs::write(h.join("20261124_010000/index.m3u8"), b"#EXTM3U").unwrap();
        let m = dir.join("mp4/live/cam/output_merge");
        fs::create_dir_all(&m).unwrap();
        fs::write(m.join("stream_full.mp4"), b"x").unwrap();
        fs::create_dir_all(dir.join("mp4/bad.name/x")).unwrap();
        let j = recordings_json(&dir, "");
        assert_eq!(
            j,
            "{\"recordings\":[{\"app\":\"live\",\"stream\":\"cam\",\
             \"flv\":[\"/flv/live/cam/20261124_020000.flv\",\"/flv/live/cam/20261124_010000.flv\"],\
             \"hls\":[\"/hls/live/cam/index.m3u8\",\"/hls/live/cam/20261124_010000/index.m3u8\"],\
             \"mp4\":[{\"session\":\"current\",\"merged\":\"/mp4/live/cam/output_merge/stream_full.mp4\",\
             \"muxed\":null,\"separate\":null}]}],\"total\":1,\"offset\":0,\"limit\":1000}"
        );
        assert_eq!(
            recordings_json(&dir, "app=other"),
            "{\"recordings\":[],\"total\":0,\"offset\":0,\"limit\":1000}"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
