//! `/playback/{app}/{stream}.mp4?start=&duration=[&format=fmp4]`: an MP4 cut of the recorded
//! sessions of a time range. The query is checked here, the sessions picked from the index, the
//! cut made on the cutter thread (`record::cut`) while the connection waits, then served like a
//! static file (Range, HEAD, ETag); the last few cuts are kept a minute for the Range requests
//! that follow. It does not list recordings (`listing.rs`) nor cut MP4 itself.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use super::sessions_of;
use crate::http::files::{Found, Root, Source, StaticRequest};
use crate::http::request::Request;
use crate::media::key::query_param;
use crate::media::StreamKey;
use crate::mux::hls::format_iso8601;
use crate::record::cut::CutError;
use crate::record::index::Session;
use crate::server::conn::ConnState;
use crate::server::Server;

impl Server {
    /// `/playback/{app}/{stream}.mp4` on the origin: `--files-token` first, like the files it cuts.
    pub(in crate::server) fn http_playback(&mut self, token: usize, req: &Request, key: StreamKey) {
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
    pub(in crate::server) fn playback_done(&mut self) {
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
            &crate::server::fs::origin_policy(false),
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
        crate::server::http::queue_static(conn, resp, sreq.keep_alive);
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
pub(in crate::server) struct Playback {
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
}
