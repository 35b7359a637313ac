//! `GET /api/recordings[?app=&stream=]`: what the data dir holds for each stream, newest session
//! first, as the home page and the VOD pages want it. A directory walk with hard caps (it runs on
//! the event loop like a static request), names filtered by the stream-name rule so nothing but
//! our own layout is ever listed.

use std::fmt::Write;
use std::fs;
use std::path::Path;

use super::api::json_str;
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

fn json_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| json_str(s)).collect();
    format!("[{}]", parts.join(","))
}

fn url_if(path: &Path, url: String) -> String {
    if path.is_file() {
        json_str(&url)
    } else {
        "null".into()
    }
}

fn stream_json(data: &Path, app: &str, stream: &str) -> String {
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
        mp4.push(format!(
            "{{\"session\":{},\"merged\":{},\"muxed\":{},\"separate\":{}}}",
            json_str(&name),
            url_if(
                &merge.join("stream_full.mp4"),
                format!("{base}output_merge/stream_full.mp4")
            ),
            url_if(
                &merge.join("index.m3u8"),
                format!("{base}output_merge/index.m3u8")
            ),
            url_if(
                &separate.join("master.m3u8"),
                format!("{base}output_separate/master.m3u8")
            ),
        ));
    }
    format!(
        "{{\"app\":{},\"stream\":{},\"flv\":{},\"hls\":{},\"mp4\":[{}]}}",
        json_str(app),
        json_str(stream),
        json_list(&flv),
        json_list(&hls),
        mp4.join(",")
    )
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
    let mut out = String::from("{\"recordings\":[");
    for (i, (app, stream)) in keys.iter().take(MAX_STREAMS).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}", stream_json(data, app, stream));
    }
    out.push_str("]}");
    out
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
