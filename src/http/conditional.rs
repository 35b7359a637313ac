//! Conditional and partial requests: the `Range` header (one byte range), ETags and If-None-Match,
//! If-Modified-Since (HTTP dates from `http::date`). Decisions only; the responder builds the
//! 206, 304 and 416 answers from them.

use std::time::{SystemTime, UNIX_EPOCH};

use super::date::{parse_http_date, unix_secs};

/// Result of `parse_range` for a representation of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// No usable range (absent, malformed, multi-range, other unit): send the whole file with 200.
    Full,
    /// Send bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses one `Range` header against a representation of `len` bytes. Only a single `bytes` range is honoured:
/// anything else, including a syntactically invalid range like `bytes=100-50`, falls back to the whole file.
pub fn parse_range(h: &str, len: u64) -> RangeSpec {
    let h = h.trim();
    let Some((unit, spec)) = h.split_once('=') else {
        return RangeSpec::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if first.is_empty() {
        // Suffix range: the last N bytes.
        let Some(n) = num(last) else {
            return RangeSpec::Full;
        };
        if n == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Partial {
            start: len - n.min(len),
            end: len - 1,
        };
    }
    let Some(start) = num(first) else {
        return RangeSpec::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match num(last) {
            Some(e) if e >= start => Some(e),
            _ => return RangeSpec::Full,
        }
    };
    if start >= len {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Partial {
        start,
        end: end.map_or(len - 1, |e| e.min(len - 1)),
    }
}

/// Whether an If-None-Match value (a list, or `*`) matches `etag`, comparing weakly (W/ ignored).
pub fn etag_matches(header: &str, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || (!t.is_empty() && t.trim_start_matches("W/") == ours))
}

/// If-None-Match decides alone when present; otherwise If-Modified-Since, compared at one-second resolution.
/// A date that cannot be parsed or lies in the future is ignored (RFC 9110 13.1.3).
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: &str,
    mtime: SystemTime,
    now: SystemTime,
) -> bool {
    if let Some(inm) = if_none_match {
        return etag_matches(inm, etag);
    }
    let Some(since) = if_modified_since.and_then(parse_http_date) else {
        return false;
    };
    if since > now {
        return false;
    }
    unix_secs(mtime) <= unix_secs(since)
}

/// A strong validator from the size and the modification time (to the nanosecond).
pub fn etag_for(len: u64, mtime: SystemTime) -> String {
    let nanos = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("\"{len:x}-{nanos:x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn range_parsing() {
        use RangeSpec::*;
        let len = 1000;
        let cases: &[(&str, RangeSpec)] = &[
            ("bytes=0-", Partial { start: 0, end: 999 }),
            ("bytes=0-0", Partial { start: 0, end: 0 }),
            (
                "bytes=100-199",
                Partial {
                    start: 100,
                    end: 199,
                },
            ),
            (
                "bytes=500-",
                Partial {
                    start: 500,
                    end: 999,
                },
            ),
            (
                "bytes=-500",
                Partial {
                    start: 500,
                    end: 999,
                },
            ),
            (
                "bytes=-1",
                Partial {
                    start: 999,
                    end: 999,
                },
            ),
            ("bytes=-5000", Partial { start: 0, end: 999 }),
            (
                "bytes=900-5000",
                Partial {
                    start: 900,
                    end: 999,
                },
            ),
            (
                "bytes=999-999",
                Partial {
                    start: 999,
                    end: 999,
                },
            ),
            ("Bytes = 10 - 20 ", Partial { start: 10, end: 20 }),
            ("bytes=1000-", Unsatisfiable),
            ("bytes=1000-2000", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=100-50", Full),
            ("bytes=0-1,5-6", Full),
            ("bytes=-", Full),
            ("bytes=a-b", Full),
            ("bytes=1-2-3", Full),
            ("bytes=+1-2", Full),
            ("bytes=99999999999999999999999-", Full),
            ("items=0-1", Full),
            ("bytes 0-1", Full),
            ("", Full),
        ];
        for (h, want) in cases {
            assert_eq!(parse_range(h, len), *want, "{h:?}");
        }
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-10", 0), Unsatisfiable);
    }

    #[test]
    fn validators_decide_not_modified() {
        let mtime = UNIX_EPOCH + Duration::from_millis(784_111_777_250);
        let now = mtime + Duration::from_secs(60);
        let etag = etag_for(11, mtime);
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert_ne!(etag, etag_for(12, mtime));
        assert!(etag_matches(&format!("W/{etag}"), &etag));
        assert!(etag_matches(&format!("\"x\", {etag}"), &etag));
        assert!(etag_matches("*", &etag));
        assert!(!etag_matches("", &etag) && !etag_matches("\"x\"", &etag));
        let same = "Sun, 06 Nov 1994 08:49:37 GMT";
        let earlier = "Sun, 06 Nov 1994 08:49:36 GMT";
        assert!(not_modified(None, Some(same), &etag, mtime, now));
        assert!(!not_modified(None, Some(earlier), &etag, mtime, now));
        assert!(!not_modified(None, Some("garbage"), &etag, mtime, now));
        assert!(!not_modified(None, None, &etag, mtime, now));
        // If-None-Match decides alone; a date in the future is ignored.
        assert!(!not_modified(Some("\"x\""), Some(same), &etag, mtime, now));
        assert!(!not_modified(
            None,
            Some(same),
            &etag,
            mtime,
            mtime - Duration::from_secs(5)
        ));
    }
}
