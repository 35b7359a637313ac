//! Request path -> `Route`, for the origin's HTTP port. Table-tested; no I/O. Names under
//! `/llhls/` are only shaped here; the LL-HLS window says which exist.

use crate::media::key::{valid_name, StreamKey};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/{app}/{stream}.flv`: HTTP-FLV, or WS-FLV when the request is a WebSocket upgrade.
    LiveFlv(StreamKey),
    ApiStreams,
    /// `/api/streams/history`: the last 10 minutes of every stream and of the server.
    ApiHistory,
    ApiServer,
    /// `/api/recordings`: what the data dir holds, per stream.
    ApiRecordings,
    /// `/api/recordings/{app}/{stream}[/{session}]`: one stream's sessions (GET), or one session
    /// (DELETE).
    ApiRecordingsOf {
        key: StreamKey,
        session: Option<String>,
    },
    /// `/playback/{app}/{stream}.mp4`: a time range cut from the fMP4 recordings.
    Playback(StreamKey),
    Metrics,
    /// `/llhls/{app}/{stream}/{file}`: the in-memory LL-HLS output (`index.m3u8`, `init.mp4`,
    /// `seg{N}.m4s`, `part{K}.m4s`; `llhls::LiveWindow::lookup` knows the names).
    Llhls {
        key: StreamKey,
        file: String,
    },
    /// Anything else: the static file service (or 404 where there is none).
    Static,
}

impl Route {
    /// The JSON API, which the web port answers too (the pages it serves need it).
    pub fn is_api(&self) -> bool {
        matches!(
            self,
            Route::ApiStreams
                | Route::ApiHistory
                | Route::ApiServer
                | Route::ApiRecordings
                | Route::ApiRecordingsOf { .. }
        )
    }
}

/// Routes a path (the request-target without its query).
pub fn route(path: &str) -> Route {
    match path {
        "/api/streams" => return Route::ApiStreams,
        "/api/streams/history" => return Route::ApiHistory,
        "/api/server" => return Route::ApiServer,
        "/api/recordings" => return Route::ApiRecordings,
        "/metrics" => return Route::Metrics,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/api/recordings/") {
        return recordings_of(rest).unwrap_or(Route::Static);
    }
    if let Some(rest) = path.strip_prefix("/playback/") {
        let mut parts = rest.split('/');
        if let (Some(app), Some(file), None) = (parts.next(), parts.next(), parts.next()) {
            if let Some(key) = file
                .strip_suffix(".mp4")
                .and_then(|s| StreamKey::new(app, s).ok())
                .filter(|k| valid_name(&k.app) && valid_name(&k.stream) && !app.contains('?'))
            {
                return Route::Playback(key);
            }
        }
        return Route::Static;
    }
    if let Some(rest) = path.strip_prefix("/llhls/") {
        return llhls(rest).unwrap_or(Route::Static);
    }
    let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
    if let (Some(app), Some(file), None) = (parts.next(), parts.next(), parts.next()) {
        if let Some(stream) = file.strip_suffix(".flv") {
            // Recordings live under /flv/{app}/{stream}/..., three segments deep, so a two-segment
            // .flv path is always live. A bad name is simply not a live stream: 404 from the caller.
            if valid_name(app) && valid_name(stream) {
                if let Ok(key) = StreamKey::new(app, stream) {
                    return Route::LiveFlv(key);
                }
            }
        }
    }
    Route::Static
}

/// `{app}/{stream}` or `{app}/{stream}/{session}` (a recorder's session name).
fn recordings_of(rest: &str) -> Option<Route> {
    let mut parts = rest.split('/');
    let (app, stream) = (parts.next()?, parts.next()?);
    let session = parts.next();
    if parts.next().is_some() || !valid_name(app) || !valid_name(stream) {
        return None;
    }
    if session.is_some_and(|s| !crate::media::key::is_session_name(s)) {
        return None;
    }
    Some(Route::ApiRecordingsOf {
        key: StreamKey::new(app, stream).ok()?,
        session: session.map(str::to_string),
    })
}

/// Longest LL-HLS file name: `part` + 19 digits + `.m4s`.
const LLHLS_FILE_MAX: usize = 27;

fn llhls(rest: &str) -> Option<Route> {
    let mut parts = rest.split('/');
    let (app, stream, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !valid_name(app) || !valid_name(stream) {
        return None;
    }
    // Letters, digits and one dot: never a path, never `..`.
    let shaped = file.len() <= LLHLS_FILE_MAX
        && file.bytes().filter(|&b| b == b'.').count() == 1
        && file.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
    if !shaped {
        return None;
    }
    let key = StreamKey::new(app, stream).ok()?;
    Some(Route::Llhls {
        key,
        file: file.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let live = |a: &str, s: &str| Route::LiveFlv(StreamKey::new(a, s).unwrap());
        let ll = |f: &str| Route::Llhls {
            key: StreamKey::new("live", "s").unwrap(),
            file: f.to_string(),
        };
        let cases = [
            ("/live/stream.flv", live("live", "stream")),
            ("/a-b/c_1.flv", live("a-b", "c_1")),
            ("/api/streams", Route::ApiStreams),
            ("/api/streams/history", Route::ApiHistory),
            ("/api/streams/history/x", Route::Static),
            ("/api/server", Route::ApiServer),
            ("/api/recordings", Route::ApiRecordings),
            (
                "/api/recordings/live/s",
                Route::ApiRecordingsOf {
                    key: StreamKey::new("live", "s").unwrap(),
                    session: None,
                },
            ),
            (
                "/api/recordings/live/s/20261124_011500_1",
                Route::ApiRecordingsOf {
                    key: StreamKey::new("live", "s").unwrap(),
                    session: Some("20261124_011500_1".into()),
                },
            ),
            ("/api/recordings/live/s/..", Route::Static),
            ("/api/recordings/live/s/20261124_011500/x", Route::Static),
            ("/api/recordings/live", Route::Static),
            (
                "/playback/live/s.mp4",
                Route::Playback(StreamKey::new("live", "s").unwrap()),
            ),
            ("/playback/live/s.flv", Route::Static),
            ("/playback/live/x/s.mp4", Route::Static),
            ("/playback/../s.mp4", Route::Static),
            ("/metrics", Route::Metrics),
            ("/", Route::Static),
            ("/index.html", Route::Static),
            ("/live/../x.flv", Route::Static),
            ("/flv/live/s/20260101_000000.flv", Route::Static),
            ("/live/.flv", Route::Static),
            ("/live/a.b.flv", Route::Static),
            ("/hls/live/s/index.m3u8", Route::Static),
            ("/llhls/live/s/index.m3u8", ll("index.m3u8")),
            ("/llhls/live/s/init.mp4", ll("init.mp4")),
            ("/llhls/live/s/init2.mp4", ll("init2.mp4")),
            ("/llhls/live/s/seg12.m4s", ll("seg12.m4s")),
            (
                "/llhls/live/s/part9999999999999999999.m4s",
                ll("part9999999999999999999.m4s"),
            ),
            ("/llhls/live/s/part99999999999999999999.m4s", Route::Static),
            ("/llhls/live/s/", Route::Static),
            ("/llhls/live/s/..", Route::Static),
            ("/llhls/live/s/a..m4s", Route::Static),
            ("/llhls/live/s/x/index.m3u8", Route::Static),
            ("/llhls/live/index.m3u8", Route::Static),
            ("/llhls/../s/index.m3u8", Route::Static),
            ("/llhls/live/s/index%2em3u8", Route::Static),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), want, "{path}");
        }
    }
}
