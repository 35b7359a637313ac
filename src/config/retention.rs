//! `--record-keep-days`, `--record-max-size`, `--record-min-free`: the options, their parsing into
//! `record::retention::Bounds`, and their `--print-config` lines.

use super::ConfigError;
use crate::record::retention::Bounds;
use getopts::Options;

pub fn options(opts: &mut Options) {
    opts.optopt(
        "",
        "record-keep-days",
        "delete finished recording sessions that ended more than N days ago [keep all]",
        "N",
    );
    opts.optopt(
        "",
        "record-max-size",
        "delete the oldest finished sessions while all recordings take more than SIZE (e.g. 500G) [no bound]",
        "SIZE",
    );
    opts.optopt(
        "",
        "record-min-free",
        "delete the oldest finished sessions while the data dir's file system has less than SIZE free; 0 turns it off [1G or 5%, whichever is smaller]",
        "SIZE",
    );
}

/// `1234`, `500K`, `20M`, `1G`, `2T` (powers of 1024; a trailing `B` or `iB` is allowed).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 10),
        'm' | 'M' => (&t[..t.len() - 1], 20),
        'g' | 'G' => (&t[..t.len() - 1], 30),
        't' | 'T' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

fn size(m: &getopts::Matches, name: &str) -> Result<Option<u64>, ConfigError> {
    match m.opt_str(name) {
        None => Ok(None),
        Some(v) => parse_size(&v).map(Some).ok_or_else(|| {
            ConfigError(format!(
                "--{name}: '{v}' is not a size (a number of bytes, or with K, M, G or T)"
            ))
        }),
    }
}

pub fn bounds(m: &getopts::Matches) -> Result<Bounds, ConfigError> {
    let keep_days = match m.opt_str("record-keep-days") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=36_500).contains(&n) => Some(n),
            _ => {
                return Err(ConfigError(format!(
                    "--record-keep-days: '{v}' is not a number of days from 1 to 36500"
                )))
            }
        },
    };
    let max_size = size(m, "record-max-size")?;
    if max_size == Some(0) {
        return Err(ConfigError(
            "--record-max-size: 0 would delete every recording; leave it out for no bound".into(),
        ));
    }
    Ok(Bounds {
        keep_days,
        max_size,
        min_free: size(m, "record-min-free")?,
    })
}

pub fn render(line: &mut dyn FnMut(&str, String), b: &Bounds) {
    let opt = |v: Option<u64>| v.map_or_else(|| "(none)".to_string(), |n| n.to_string());
    line("record-keep-days", opt(b.keep_days));
    line("record-max-size", opt(b.max_size));
    line(
        "record-min-free",
        b.min_free.map_or_else(
            || "(1G or 5%, whichever is smaller)".into(),
            |n| n.to_string(),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1234"), Some(1234));
        assert_eq!(parse_size("500K"), Some(500 << 10));
        assert_eq!(parse_size("20M"), Some(20 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("2TB"), Some(2 << 40));
        for bad in ["", "G", "-1", "1.5G", "1X", "99999999999999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
