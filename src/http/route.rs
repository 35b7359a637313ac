//! Request path -> `Route`, for the origin's HTTP port. Table-tested; no I/O.

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
    Metrics,
    /// Anything else: the static file service (or 404 where there is none).
    Static,
}

impl Route {
    /// The JSON API, which the web port answers too (the pages it serves need it).
    pub fn is_api(&self) -> bool {
        matches!(
            self,
            Route::ApiStreams | Route::ApiHistory | Route::ApiServer | Route::ApiRecordings
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let live = |a: &str, s: &str| Route::LiveFlv(StreamKey::new(a, s).unwrap());
        let cases = [
            ("/live/stream.flv", live("live", "stream")),
            ("/a-b/c_1.flv", live("a-b", "c_1")),
            ("/api/streams", Route::ApiStreams),
            ("/api/streams/history", Route::ApiHistory),
            ("/api/streams/history/x", Route::Static),
            ("/api/server", Route::ApiServer),
            ("/api/recordings", Route::ApiRecordings),
            ("/metrics", Route::Metrics),
            ("/", Route::Static),
            ("/index.html", Route::Static),
            ("/live/../x.flv", Route::Static),
            ("/flv/live/s/20260101_000000.flv", Route::Static),
            ("/live/.flv", Route::Static),
            ("/live/a.b.flv", Route::Static),
            ("/hls/live/s/index.m3u8", Route::Static),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), want, "{path}");
        }
    }
}
