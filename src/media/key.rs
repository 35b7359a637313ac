//! `StreamKey`: the validated `app/stream` name. The name rule (`^[A-Za-z0-9_-]{1,64}$`) is also
//! what keeps names from escaping the data directory, so every path built from a key is safe.
//! `is_session_name` is the rule of a recorder's session names, which URLs carry too.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub app: String,
    pub stream: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// The app or stream name is empty, longer than 64 bytes, or has a byte outside `[A-Za-z0-9_-]`.
    BadName,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("app and stream names must match ^[A-Za-z0-9_-]{1,64}$")
    }
}

impl std::error::Error for KeyError {}

/// True when `name` is a valid app or stream name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// True for a session name as `record::paths::local_stamp` makes them, with the optional `_N` clash suffix
/// (`20261124_011500`, `20261124_011500_1`): FLV file stems and archived session folders.
pub fn is_session_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 15
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'_'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && (b.len() == 15
            || (b[15] == b'_' && b.len() > 16 && b[16..].iter().all(u8::is_ascii_digit)))
}

/// Splits `name?query` into the name and the query (without `?`).
pub fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.find('?') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// The value of `param` in a `a=b&c=d` query string, if present.
pub fn query_param<'a>(query: &'a str, param: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == param).then_some(v)
    })
}

impl StreamKey {
    /// Builds a key from an app and a stream name; a `?query` on either is stripped first.
    pub fn new(app: &str, stream: &str) -> Result<StreamKey, KeyError> {
        let app = split_query(app).0;
        let stream = split_query(stream).0;
        if valid_name(app) && valid_name(stream) {
            Ok(StreamKey {
                app: app.to_string(),
                stream: stream.to_string(),
            })
        } else {
            Err(KeyError::BadName)
        }
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(StreamKey::new("live", "stream").is_ok());
        assert!(StreamKey::new("live", "cam_1-A?token=x").is_ok());
        assert_eq!(StreamKey::new("live", "a?b").unwrap().stream, "a");
        for bad in ["", "..", "a/b", "a b", "é", &"x".repeat(65), "a\\b", "a.b"] {
            assert!(StreamKey::new("live", bad).is_err(), "{bad:?}");
            assert!(StreamKey::new(bad, "s").is_err(), "{bad:?}");
        }
        assert!(StreamKey::new("live", &"x".repeat(64)).is_ok());
    }

    #[test]
    fn query() {
        assert_eq!(split_query("s?token=1&x=2"), ("s", Some("token=1&x=2")));
        assert_eq!(query_param("token=1&x=2", "x"), Some("2"));
        assert_eq!(query_param("token=1&x=2", "y"), None);
    }
}
