//! The recordings library as JSON: `/api/recordings` (every stream, newest session first, paged)
//! and `/api/recordings/{app}/{stream}` (one stream's sessions with their URLs), built from each
//! stream's index (`record::index`, read through `sessions_of`) or, for a stream without one, a
//! capped walk of its folders that lists only names of our own layout. Every answer is a struct
//! written by serde_json, keys in the order the pages read them. It answers no request itself
//! (`mod.rs` routes them) and serves no file.

use std::fs;
use std::path::Path;

use serde::Serialize;

use super::sessions_of;
use crate::codec::json;
use crate::media::key::query_param;
use crate::media::StreamKey;
use crate::mux::hls::format_iso8601;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::recordings::{Deleting, NoRecordings};

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
