//! Range, ETag and HTTP-date parsing (`http::conditional`, `codec::calendar`): a satisfiable range
//! lies inside the representation; a parsed date formats and parses back to itself; the calendar
//! is defined for every day count.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::codec::calendar::{
    civil_from_days, days_from_civil, http_date, parse_http_date, DateTime,
};
use rtmpd::http::conditional::{etag_for, etag_matches, not_modified, parse_range, RangeSpec};
use rtmpd_fuzz::Cursor;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let len = c.u64() >> (c.u8() % 64);
    let days = c.u64() as i64;
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
    let (y, m, d) = civil_from_days(days);
    assert!((1..=12).contains(&m) && (1..=31).contains(&d));
    // The documented domain of the inverse: |year| < 10^13.
    if y.abs() < 10_000_000_000_000 && days > i64::MIN + 1_000_000 {
        assert_eq!(days_from_civil(y, m, d), days);
    }
    let _ = DateTime::from_unix_secs(days).stamp();
});
