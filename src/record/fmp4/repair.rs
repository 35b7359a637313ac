//! The fMP4 recorder's session folders across restarts: rotating the previous session's folders
//! aside when a new publish starts (named by their `meta.json` start stamp), and the crash repair
//! at origin start (close the playlists, rebuild `stream_full.mp4` from the segments). The live
//! recording itself is `record::fmp4`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::record::merge::merge_dir;
use crate::record::paths::{self, local_stamp, replace_file};
use crate::record::paths::{FULL_NAME, INIT_NAME, MUXED_PREFIX};
use crate::record::paths::{MERGE_DIR, META_NAME, MUXED_PLAYLIST, SEPARATE_DIR};

/// Longer than any `meta.json` the recorder writes (a few hundred bytes).
const META_MAX_BYTES: u64 = 64 * 1024;

/// The `"started"` stamp of a folder's `meta.json`, if present and well-formed.
fn meta_started(dir: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        started: String,
    }
    // A file of ours, but read as hostile: at most a few KiB is ever written, so a larger one is
    // not ours and is not read whole.
    let file = fs::File::open(dir.join(META_NAME)).ok()?;
    let text = io::read_to_string(io::Read::take(file, META_MAX_BYTES)).ok()?;
    let stamp = serde_json::from_str::<Meta>(&text).ok()?.started;
    let ok = stamp.len() == 15
        && stamp
            .char_indices()
            .all(|(i, c)| if i == 8 { c == '_' } else { c.is_ascii_digit() });
    ok.then_some(stamp)
}

fn has_files(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Moves the previous session's folders into `stream_dir/{YYYYMMDD_HHMMSS}[_N]/`, named after
/// the start recorded in its `meta.json` (else the folder's time). Empty folders are removed
/// instead. Returns the folder they went to.
pub(super) fn rotate(stream_dir: &Path) -> io::Result<Option<PathBuf>> {
    let merge = stream_dir.join(MERGE_DIR);
    let separate = stream_dir.join(SEPARATE_DIR);
    for d in [&merge, &separate] {
        if d.is_dir() && !has_files(d) {
            let _ = fs::remove_dir(d);
        }
    }
    if !merge.is_dir() && !separate.is_dir() {
        return Ok(None);
    }
    let name = meta_started(&merge)
        .or_else(|| meta_started(&separate))
        .or_else(|| {
            [&merge, &separate]
                .into_iter()
                .find_map(|d| fs::metadata(d).and_then(|m| m.modified()).ok())
                .map(local_stamp)
        })
        .unwrap_or_else(|| local_stamp(SystemTime::now()));
    paths::archive_session(stream_dir, &name, |p, ty| {
        ty.is_dir()
            && p.file_name()
                .is_some_and(|n| n == MERGE_DIR || n == SEPARATE_DIR)
    })
}

/// Is this `output_merge/` a session a crash left unmerged (segments, but no full file)?
fn unmerged(dir: &Path) -> bool {
    if dir.join(FULL_NAME).exists() || !dir.join(INIT_NAME).is_file() {
        return false;
    }
    fs::read_dir(dir).is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.strip_prefix(MUXED_PREFIX)
                .is_some_and(|r| r.starts_with('_'))
                && n.ends_with(".m4s")
        })
    })
}

/// Adds `#EXT-X-ENDLIST` to a playlist a crash left open.
fn close_playlist(path: &Path) -> io::Result<()> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if text.contains("#EXT-X-ENDLIST") {
        return Ok(());
    }
    replace_file(path, format!("{text}#EXT-X-ENDLIST\n").as_bytes())
}

/// Called once at origin start, before any publish: builds `stream_full.mp4` for every session
/// under `data_dir/mp4/` (current or rotated) that a crash left unmerged, closes its playlists,
/// and returns one log line per session handled.
pub fn repair(data_dir: &Path) -> Vec<String> {
    let mut log = Vec::new();
    let mut candidates = Vec::new();
    let subdirs = |p: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    for app in subdirs(&data_dir.join("mp4")) {
        for stream in subdirs(&app) {
            candidates.push(stream.join(MERGE_DIR));
            for session in subdirs(&stream) {
                candidates.push(session.join(MERGE_DIR));
            }
        }
    }
    for dir in candidates.into_iter().filter(|d| unmerged(d)) {
        let _ = close_playlist(&dir.join(MUXED_PLAYLIST));
        if let Some(parent) = dir.parent() {
            for name in ["audio.m3u8", "video.m3u8"] {
                let _ = close_playlist(&parent.join(SEPARATE_DIR).join(name));
            }
        }
        match merge_dir(&dir) {
            Ok(r) => log.push(format!(
                "mp4: rebuilt {} from {} segments ({} samples, {} ms{})",
                r.output.display(),
                r.segments,
                r.samples,
                r.duration_ms,
                if r.damaged.is_empty() {
                    String::new()
                } else {
                    // Each is named, with what was wrong, on the warning lines before this one.
                    let names: Vec<_> = r
                        .damaged
                        .iter()
                        .map(|d| d.path.file_name().unwrap_or_default().to_string_lossy())
                        .collect();
                    format!(
                        ", {} samples of damaged segments dropped: {}",
                        r.dropped_samples,
                        names.join(", ")
                    )
                }
            )),
            Err(e) => log.push(format!("mp4: could not rebuild {}: {e}", dir.display())),
        }
    }
    log
}
