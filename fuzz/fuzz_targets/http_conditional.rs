//! Range, ETag and HTTP-date parsing (`http::conditional`, `http::date`): a satisfiable range
//! lies inside the representation; a parsed date formats and parses back to itself; every second
//! count has a date.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::http::date::{http_date, parse_http_date, utc};
use rtmpd::http::conditional::{etag_for, etag_matches, not_modified, parse_range, RangeSpec};
use rtmpd_fuzz::Cursor;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let len = c.u64() >> (c.u8() % 64);
    let secs = c.u64() as i64;
    let Ok(text) = std::str::from_utf8(c.rest()) else {
        return;
    };
    match parse_range(text, len) {
        RangeSpec::Partial { start, end } => assert!(start <= end && end < len, "{text:?} {len}"),
        RangeSpec::Full | RangeSpec::Unsatisfiable => {}
    }
    if let Some(t) = parse_http_date(text) {
        let formatted = http_date(t);
        assert_eq!(parse_http_date(&formatted), Some(t), "{text:?} -> {formatted:?}");
    }
    let mtime = UNIX_EPOCH + Duration::from_secs(len % (1 << 40));
    let etag = etag_for(len, mtime);
    assert!(etag_matches(&etag, &etag));
    let _ = etag_matches(text, &etag);
    let _ = not_modified(None, Some(text), &etag, mtime, mtime);
    let _ = not_modified(Some(text), None, &etag, mtime, mtime);
    let _ = utc(secs);
});
