//! `GET /api/recordings[?app=&stream=]`: what the data dir holds for each stream, newest session
//! first, as the home page and the VOD pages want it. A directory walk with hard caps (it runs on
//! the event loop like a static request), names filtered by the stream-name rule so nothing but
//! our own layout is ever listed.

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::codec::json;
use crate::media::key::valid_name;
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

fn url_if(path: &Path, url: String) -> Option<String> {
    path.is_file().then_some(url)
}

#[derive(Serialize)]
struct Recordings {
    recordings: Vec<StreamRecordings>,
}

/// One stream's recordings, newest first: FLV files, HLS playlists, fMP4 sessions.
#[derive(Serialize)]
struct StreamRecordings {
    app: String,
    stream: String,
    flv: Vec<String>,
    hls: Vec<String>,
    mp4: Vec<Mp4Session>,
}

/// An fMP4 session (`current` or its start stamp) and the URLs of what it holds.
#[derive(Serialize)]
struct Mp4Session {
    session: String,
    merged: Option<String>,
    muxed: Option<String>,
    separate: Option<String>,
}

fn stream_recordings(data: &Path, app: String, stream: String) -> StreamRecordings {
    let flv_dir = data.join("flv").join(&app).join(&stream);
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

    let hls_dir = data.join("hls").join(&app).join(&stream);
    let mut hls = Vec::new();
    if hls_dir.join("index.m3u8").is_file() {
        hls.push(format!("/hls/{app}/{stream}/index.m3u8"));
    }
    for s in subdirs(&hls_dir).iter().rev().filter(|s| is_session(s)) {
        if hls_dir.join(s).join("index.m3u8").is_file() {
            hls.push(format!("/hls/{app}/{stream}/{s}/index.m3u8"));
        }
    }

    let mp4_dir = data.join("mp4").join(&app).join(&stream);
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
        mp4.push(Mp4Session {
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
    StreamRecordings {
        app,
        stream,
        flv,
        hls,
        mp4,
    }
}

/// The JSON body; `app`/`stream` narrow the list when given.
pub fn recordings_json(data: &Path, only_app: Option<&str>, only_stream: Option<&str>) -> String {
    let mut keys: Vec<(String, String)> = Vec::new();
    for kind in ["flv", "hls", "mp4"] {
        for app in subdirs(&data.join(kind))
            .into_iter()
            .filter(|a| valid_name(a))
        {
            if only_app.is_some_and(|a| a != app) {
                continue;
            }
            for stream in subdirs(&data.join(kind).join(&app))
                .into_iter()
                .filter(|s| valid_name(s))
            {
                if only_stream.is_some_and(|s| s != stream) {
                    continue;
                }
                keys.push((app.clone(), stream));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys.truncate(MAX_STREAMS);
    let recordings = keys
        .into_iter()
        .map(|(app, stream)| stream_recordings(data, app, stream))
        .collect();
    json::to_string(&Recordings { recordings })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let j = recordings_json(&dir, None, None);
        assert_eq!(
            j,
            "{\"recordings\":[{\"app\":\"live\",\"stream\":\"cam\",\
             \"flv\":[\"/flv/live/cam/20261124_020000.flv\",\"/flv/live/cam/20261124_010000.flv\"],\
             \"hls\":[\"/hls/live/cam/index.m3u8\",\"/hls/live/cam/20261124_010000/index.m3u8\"],\
             \"mp4\":[{\"session\":\"current\",\"merged\":\"/mp4/live/cam/output_merge/stream_full.mp4\",\
             \"muxed\":null,\"separate\":null}]}]}"
        );
        assert_eq!(
            recordings_json(&dir, Some("other"), None),
            "{\"recordings\":[]}"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
