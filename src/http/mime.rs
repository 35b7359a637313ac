//! What a served file is and how long caches keep it: the MIME type from the extension, and the
//! Cache-Control policy. Which folders are archived sessions is the recorders' naming rule, passed
//! in as `CachePolicy::archived_dir` (the origin sets it from `record::paths::is_session_name`).
//!
//! Cache-Control policy (why each choice):
//! - `.ts`/`.m4s` segments: `public, max-age=60`. A closed segment is never rewritten, but a republished stream
//!   starts again at `segment_1` under the same URL (the previous session moves into a `YYYYMMDD_HHMMSS/`
//!   folder), so a day-long cache could hand a viewer the previous session's `segment_N`. Sixty seconds covers
//!   what caching buys for live (many viewers asking for the same segment within seconds) with that risk gone
//!   unless a session lasted under a minute.
//! - anything inside an archived session folder (a directory segment `archived_dir` accepts):
//!   `public, max-age=31536000, immutable`; those files never change again.
//! - everything else (m3u8, json, html, init segments, growing FLV/MP4 recordings, page assets): `no-cache`, so
//!   caches revalidate with the ETag and get a cheap 304.

pub const LIVE_SEGMENT_CACHE: &str = "public, max-age=60";
pub const ARCHIVE_CACHE: &str = "public, max-age=31536000, immutable";
pub const REVALIDATE: &str = "no-cache";

/// The MIME type for a file name, from its extension (case-insensitive).
pub fn mime_for(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((_, e)) => e.to_ascii_lowercase(),
        None => return "application/octet-stream",
    };
    match ext.as_str() {
        "m3u8" => "application/vnd.apple.mpegurl",
        "ts" => "video/mp2t",
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "m4a" => "audio/mp4",
        "flv" => "video/x-flv",
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript",
        "css" => "text/css",
        "json" | "map" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "svg" => "image/svg+xml",
        "wasm" => "application/wasm",
        "txt" | "log" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The Cache-Control policy of one static service; see the module doc for the reasons.
#[derive(Clone, Copy)]
pub struct CachePolicy {
    /// True for a folder name that holds a finished (archived) session, whose files never change.
    pub archived_dir: fn(&str) -> bool,
}

impl std::fmt::Debug for CachePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachePolicy")
    }
}

impl CachePolicy {
    /// No folder is an archive (the file gateway's and the tests' default).
    pub const NO_ARCHIVES: CachePolicy = CachePolicy {
        archived_dir: |_| false,
    };

    /// Cache-Control for a served path (segments joined with '/').
    pub fn cache_control_for(&self, path: &str) -> &'static str {
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().unwrap_or("");
        if parts.iter().any(|p| (self.archived_dir)(p)) {
            return ARCHIVE_CACHE;
        }
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "ts" | "m4s" => LIVE_SEGMENT_CACHE,
            _ => REVALIDATE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_lookup() {
        let cases: &[(&str, &str)] = &[
            ("/hls/live/s/index.m3u8", "application/vnd.apple.mpegurl"),
            ("segment_1.ts", "video/mp2t"),
            ("segment_1.m4s", "video/iso.segment"),
            ("stream_full.MP4", "video/mp4"),
            ("20261124_010203.flv", "video/x-flv"),
            ("index.html", "text/html; charset=utf-8"),
            ("a.htm", "text/html; charset=utf-8"),
            ("vendor/hls.min.js", "text/javascript"),
            ("style.css", "text/css"),
            ("meta.json", "application/json"),
            ("logo.png", "image/png"),
            ("favicon.ico", "image/x-icon"),
            ("icon.svg", "image/svg+xml"),
            ("decoder.wasm", "application/wasm"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("README", "application/octet-stream"),
            ("archive.tar.gz", "application/octet-stream"),
            ("dir.d/file", "application/octet-stream"),
        ];
        for (p, want) in cases {
            assert_eq!(mime_for(p), *want, "{p}");
        }
    }

    #[test]
    fn cache_control_policy_with_a_given_archive_rule() {
        // The origin's rule (record::paths::is_session_name) is tested in server::fs; here any rule will do.
        let policy = CachePolicy {
            archived_dir: |s| s.starts_with("old"),
        };
        let cases: &[(&str, &str)] = &[
            ("hls/live/s/index.m3u8", REVALIDATE),
            ("index.html", REVALIDATE),
            ("hls/live/s/segment_3.ts", LIVE_SEGMENT_CACHE),
            ("mp4/live/s/output_merge/segment_3.M4S", LIVE_SEGMENT_CACHE),
            ("mp4/live/s/output_merge/init.mp4", REVALIDATE),
            ("hls/live/s/old1/segment_3.ts", ARCHIVE_CACHE),
            ("hls/live/s/old1/index.m3u8", ARCHIVE_CACHE),
            // The file name itself is not a folder.
            ("hls/live/s/old.ts", LIVE_SEGMENT_CACHE),
        ];
        for (p, want) in cases {
            assert_eq!(policy.cache_control_for(p), *want, "{p}");
        }
        assert_eq!(
            CachePolicy::NO_ARCHIVES.cache_control_for("hls/live/s/old1/segment_3.ts"),
            LIVE_SEGMENT_CACHE
        );
    }
}
