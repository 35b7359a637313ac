//! The one civil calendar (proleptic Gregorian, UTC): days since 1970-01-01 <-> year, month, day;
//! the HTTP-date (RFC 9110 5.6.7: IMF-fixdate out, the three forms in); the `YYYYMMDD_HHMMSS`
//! stamp of recording names. Arithmetic only: no clock and no time zones (local time comes from
//! the OS, in `record::paths`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Calendar fields from days since 1970-01-01 (negative before it), by H. Hinnant's algorithm.
/// Defined for every `i64` (the last 719,468 days saturate to one date).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 for a civil date, the inverse of `civil_from_days` (month 1-12). Callers
/// with a year read from outside bound it first: the arithmetic holds for |year| < 10^13.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A moment split into calendar fields, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl DateTime {
    /// The UTC fields of `secs` seconds since the epoch (negative before it).
    pub fn from_unix_secs(secs: i64) -> DateTime {
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400) as u32;
        DateTime {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
        }
    }

    /// The UTC fields of `t`; times before 1970 give the epoch (HTTP dates and logs never go there).
    pub fn utc(t: SystemTime) -> DateTime {
        DateTime::from_unix_secs(unix_secs(t))
    }

    /// `Jan`..`Dec`, as HTTP dates and the Common Log Format write it.
    pub fn month_abbr(&self) -> &'static str {
        MONTHS[(self.month.clamp(1, 12) - 1) as usize]
    }

    /// `YYYYMMDD_HHMMSS`, the stamp that names recording sessions.
    pub fn stamp(&self) -> String {
        format!(
            "{:04}{:02}{:02}_{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Whole seconds since the epoch, 0 before it (and saturated far after it, where i64 ends).
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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
    use std::cell::RefCell;
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
        let dt = DateTime::from_unix_secs(secs);
        let wd = WEEKDAYS[(secs.div_euclid(86_400) + 4).rem_euclid(7) as usize];
        let s = format!(
            "{wd}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            dt.day,
            dt.month_abbr(),
            dt.year,
            dt.hour,
            dt.minute,
            dt.second
        );
        out.push_str(&s);
        recent.swap(0, 1);
        recent[0] = (secs, s);
    });
}

/// Parses the three HTTP-date forms a recipient must accept (RFC 9110 5.6.7): IMF-fixdate, RFC 850 and asctime.
/// The weekday name is not checked against the date. Dates before 1970 give `None`.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let t: Vec<&str> = s.split_ascii_whitespace().collect();
    let (y, mo, d, time) = match t.as_slice() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, mo, y, time, "GMT"] if wd.ends_with(',') && y.len() == 4 => {
            (num(y)?, month(mo)?, num(d)?, *time)
        }
        // Sunday, 06-Nov-94 08:49:37 GMT
        [wd, date, time, "GMT"] if wd.ends_with(',') => {
            let mut p = date.split('-');
            let (d, mo, yy) = (p.next()?, p.next()?, p.next()?);
            if p.next().is_some() || yy.len() != 2 {
                return None;
            }
            let yy = num(yy)?;
            // Two-digit years: RFC 9110 says read them as the most recent past century that fits; 70-99 is the
            // 1900s and the rest the 2000s is that rule for any date this server meets.
            (
                if yy >= 70 { 1900 + yy } else { 2000 + yy },
                month(mo)?,
                num(d)?,
                *time,
            )
        }
        // Sun Nov  6 08:49:37 1994
        [_, mo, d, time, y] if y.len() == 4 => (num(y)?, month(mo)?, num(d)?, *time),
        _ => return None,
    };
    let mut hms = time.split(':');
    let (h, mi, sec) = (num(hms.next()?)?, num(hms.next()?)?, num(hms.next()?)?);
    if hms.next().is_some()
        || h > 23
        || mi > 59
        || sec > 60
        || y < 1970
        || d == 0
        || d > days_in_month(y, mo)
    {
        return None;
    }
    // Every field has at most four digits (`num`), so none of this can overflow.
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec.min(59));
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month(s: &str) -> Option<u32> {
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1600, 1, 1), -135_140);
        // Every day over 800 years either side of the epoch, through 400-year eras and negative days.
        for days in (-300_000i64..300_000).step_by(13) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d), "{days}");
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn fields_and_stamp() {
        let dt = DateTime::from_unix_secs(1_795_482_509);
        assert_eq!(
            (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second),
            (2026, 11, 24, 1, 8, 29)
        );
        assert_eq!(dt.stamp(), "20261124_010829");
        assert_eq!(dt.month_abbr(), "Nov");
        assert_eq!(DateTime::from_unix_secs(-1).stamp(), "19691231_235959");
        assert_eq!(DateTime::utc(UNIX_EPOCH).stamp(), "19700101_000000");
        assert_eq!(
            DateTime::utc(UNIX_EPOCH - Duration::from_secs(5)).stamp(),
            "19700101_000000"
        );
        // The extremes do not overflow.
        let _ = DateTime::from_unix_secs(i64::MAX).stamp();
        let _ = DateTime::from_unix_secs(i64::MIN).stamp();
        let _ = civil_from_days(i64::MAX);
    }

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
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
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
            "1994-11-06T08:49:37Z",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}
