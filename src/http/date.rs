//! HTTP dates (RFC 9110 5.6.7) over the `time` crate: IMF-fixdate out (`Date`, `Last-Modified`),
//! the three forms in (`If-Modified-Since`). No clock: callers pass the moment.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::parsing::Parsed;
use time::{OffsetDateTime, PrimitiveDateTime};

/// `Sun, 06 Nov 1994 08:49:37 GMT`, the form we write.
const IMF_FIXDATE: &[BorrowedFormatItem<'_>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);
/// `Sunday, 06-Nov-94 08:49:37 GMT` (obsolete RFC 850).
const RFC_850: &[BorrowedFormatItem<'_>] = format_description!(
    "[weekday repr:long], [day]-[month repr:short]-[year repr:last_two] [hour]:[minute]:[second] GMT"
);
/// `Sun Nov  6 08:49:37 1994` (C's asctime).
const ASCTIME: &[BorrowedFormatItem<'_>] = format_description!(
    "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
);

/// Whole seconds since the epoch, 0 before it (and saturated far after it, where i64 ends).
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The UTC date and time `secs` after the epoch, clamped to what `time` holds (years 1-9999
/// here, without its `large-dates` feature): a file dated past 9999 shows the last second of it.
pub fn utc(secs: i64) -> OffsetDateTime {
    let last = PrimitiveDateTime::MAX.assume_utc().unix_timestamp();
    let first = PrimitiveDateTime::MIN.assume_utc().unix_timestamp();
    OffsetDateTime::from_unix_timestamp(secs.clamp(first, last))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. Times before 1970 print as the epoch.
pub fn http_date(t: SystemTime) -> String {
    let mut s = String::with_capacity(29);
    push_http_date(&mut s, t);
    s
}

/// Appends `http_date(t)`. The last two dates formatted on this thread are kept: nearly every response carries
/// the current second's Date and, for a popular file, the same Last-Modified.
pub fn push_http_date(out: &mut String, t: SystemTime) {
    thread_local! {
        static RECENT: RefCell<[(i64, String); 2]> = const { RefCell::new([(-1, String::new()), (-1, String::new())]) };
    }
    let secs = unix_secs(t);
    RECENT.with(|cell| {
        let mut recent = cell.borrow_mut();
        if let Some((_, s)) = recent.iter().find(|(k, _)| *k == secs) {
            out.push_str(s);
            return;
        }
        // Formatting fails only for a description that asks for what the value lacks (an
        // offset of a date-only value, say); this one asks nothing an OffsetDateTime lacks.
        let s = utc(secs).format(IMF_FIXDATE).unwrap_or_default();
        out.push_str(&s);
        recent.swap(0, 1);
        recent[0] = (secs, s);
    });
}

/// Parses the three HTTP-date forms a recipient must accept (RFC 9110 5.6.7): IMF-fixdate, RFC 850 and asctime.
/// The weekday name is not checked against the date. Dates before 1970 give `None`.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let at = PrimitiveDateTime::parse(s, IMF_FIXDATE)
        .or_else(|_| PrimitiveDateTime::parse(s, ASCTIME))
        .ok()
        .or_else(|| parse_rfc_850(s))?;
    let secs = at.assume_utc().unix_timestamp();
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// RFC 850's two-digit year, read as RFC 9110 says (the most recent past century that fits):
/// 70-99 is the 1900s, the rest the 2000s, which is that rule for any date this server meets.
fn parse_rfc_850(s: &str) -> Option<PrimitiveDateTime> {
    let mut parsed = Parsed::new();
    let rest = parsed.parse_items(s.as_bytes(), RFC_850).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let century = if parsed.year_last_two()? >= 70 {
        19
    } else {
        20
    };
    parsed.set_year_century(century, false)?;
    PrimitiveDateTime::try_from(parsed).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(s), Some(t), "{s}");
        }
        assert_eq!(
            parse_http_date("Thu Nov 16 08:49:37 2023"),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_124_577))
        );
        assert_eq!(
            parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date("Monday, 01-Jan-69 00:00:00 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(3_124_224_000))
        );
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH - Duration::from_secs(5)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(1 << 40)),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        let known: &[(u64, &str)] = &[
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_709_164_799, "Wed, 28 Feb 2024 23:59:59 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (2_147_483_648, "Tue, 19 Jan 2038 03:14:08 GMT"),
            (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
        ];
        for (secs, s) in known {
            let t = UNIX_EPOCH + Duration::from_secs(*secs);
            assert_eq!(http_date(t), *s);
            assert_eq!(parse_http_date(s), Some(t));
        }
        // Every day across several leap cycles, at an odd time of day.
        for day in (0..60_000u64).step_by(7) {
            let t = UNIX_EPOCH + Duration::from_secs(day * 86_400 + 45_296);
            assert_eq!(parse_http_date(&http_date(t)), Some(t));
        }
        // Sub-second precision is dropped.
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(
            parse_http_date(&http_date(t)),
            Some(UNIX_EPOCH + Duration::from_secs(1))
        );
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 29 Feb 2023 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, -6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT trailing",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT ",
            "Sun Nov 6 08:49:37 1994",
            "1994-11-06T08:49:37Z",
            "Sun, 06 Nov 99999 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn utc_clamps_to_what_time_holds() {
        assert_eq!(utc(0), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(utc(i64::MAX).year(), 9999);
        assert_eq!(utc(i64::MIN).year(), -9999);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
