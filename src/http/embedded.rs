//! The pages built into the binary: the table that build.rs generates from `web/` (including `web/vendor/`
//! when present). Lookup only; serving them (Range, ETag, 304) is `http::files` with `Root::Embedded`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod table {
    include!(concat!(env!("OUT_DIR"), "/embedded_files.rs"));
}

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedFile {
    pub data: &'static [u8],
    /// The build time (or SOURCE_DATE_EPOCH): what Last-Modified and the ETag are derived from.
    pub mtime: SystemTime,
}

/// The file at `path`, relative to `web/` with '/' separators and no leading slash ("index.html",
/// "vendor/hls.min.js"). Directories are not entries: "vendor" or "vendor/" finds nothing.
pub fn get(path: &str) -> Option<EmbeddedFile> {
    let i = table::FILES
        .binary_search_by(|(p, _)| (*p).cmp(path))
        .ok()?;
    Some(EmbeddedFile {
        data: table::FILES[i].1,
        mtime: build_time(),
    })
}

/// Every embedded path, sorted.
pub fn list() -> impl Iterator<Item = &'static str> {
    table::FILES.iter().map(|(p, _)| *p)
}

/// Whether `dir` (no leading or trailing slash, "" for the top) holds any embedded file, so that a request for
/// the folder can be redirected to `dir/` and answered with its index.html.
pub fn is_dir(dir: &str) -> bool {
    if dir.is_empty() {
        return !table::FILES.is_empty();
    }
    // Sorted table: every path under "dir/" sorts at or after "dir/", contiguously.
    let key = format!("{dir}/");
    let i = table::FILES.partition_point(|(p, _)| *p < key.as_str());
    table::FILES
        .get(i)
        .is_some_and(|(p, _)| p.starts_with(key.as_str()))
}

fn build_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(table::BUILD_TIME_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_page_and_style_are_embedded() {
        let index = get("index.html").expect("web/index.html is embedded");
        assert!(index.data.starts_with(b"<!DOCTYPE html>"));
        assert!(get("style.css").is_some());
        assert!(index.mtime > UNIX_EPOCH);
    }

    #[test]
    fn list_is_sorted_and_complete() {
        let names: Vec<&str> = list().collect();
        assert!(names.contains(&"index.html"));
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        for n in &names {
            assert!(get(n).is_some(), "{n} listed but not found");
            assert!(!n.starts_with('/') && !n.contains('\\'));
        }
    }

    #[test]
    fn folders_and_missing_paths_are_not_files() {
        assert!(get("").is_none());
        assert!(get("/index.html").is_none());
        assert!(get("nope.html").is_none());
        assert!(is_dir(""));
        assert!(!is_dir("index.html"));
        assert!(!is_dir("nope"));
    }
}
