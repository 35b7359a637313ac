//! The access-log line: Common Log Format plus the duration, tokens redacted, one request per line
//! whatever the request holds. Formatting only; when a line is written and where is the server's.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use super::date::{unix_secs, utc};

/// `24/Nov/2026:01:02:03 +0000`: the Common Log Format's time, in UTC.
const CLF_TIME: &[BorrowedFormatItem<'_>] =
    format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");

/// One Common Log Format line plus the duration:
/// `127.0.0.1 - - [24/Nov/2026:01:02:03 +0000] "GET /x HTTP/1.1" 200 1234 0.8ms`.
/// Query values whose key contains "token" are replaced by `***` (tokens never reach logs), and quotes,
/// backslashes and control characters in the request line are escaped so one request is one line.
pub fn access_log_line(
    peer: SocketAddr,
    request_line: &str,
    status: u16,
    bytes: u64,
    started: SystemTime,
    duration: Duration,
) -> String {
    // Formatted into a buffer on the stack: this runs for every request.
    let mut buf = [0u8; 32];
    let mut w = &mut buf[..];
    let n = utc(unix_secs(started))
        .format_into(&mut w, CLF_TIME)
        .unwrap_or(0);
    let time = std::str::from_utf8(&buf[..n]).unwrap_or("");
    let ms = duration.as_secs_f64() * 1000.0;
    format!(
        "{} - - [{time}] \"{}\" {status} {bytes} {ms:.1}ms",
        peer.ip(),
        escape_log(&redact_tokens(request_line))
    )
}

/// Replaces the value of every query parameter whose name contains "token" (any case) with `***`.
pub fn redact_tokens(s: &str) -> String {
    let Some(q) = s.find('?') else {
        return s.to_string();
    };
    let (before, rest) = s.split_at(q + 1);
    // The query ends at a space (request line: "GET /p?q HTTP/1.1") or a fragment.
    let end = rest.find([' ', '#']).unwrap_or(rest.len());
    let (query, after) = rest.split_at(end);
    let mut out = String::with_capacity(s.len());
    out.push_str(before);
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, _)) if k.to_ascii_lowercase().contains("token") => {
                out.push_str(k);
                out.push_str("=***");
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(after);
    out
}

fn escape_log(s: &str) -> String {
    if !s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The request path (no query or fragment), escaped, for log lines.
pub fn log_path_of(target: &str) -> String {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    escape_log(&target[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn access_log_format() {
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let started = UNIX_EPOCH + Duration::from_secs(1_795_482_123); // 2026-11-24 01:02:03 UTC
        let line = access_log_line(
            peer,
            "GET /x HTTP/1.1",
            200,
            1234,
            started,
            Duration::from_micros(800),
        );
        assert_eq!(
            line,
            "127.0.0.1 - - [24/Nov/2026:01:02:03 +0000] \"GET /x HTTP/1.1\" 200 1234 0.8ms"
        );

        let peer: SocketAddr = "[::1]:1".parse().unwrap();
        let line = access_log_line(
            peer,
            "GET /live/s.flv?app=1&token=SECRET&Play_Token=x HTTP/1.1",
            403,
            0,
            started,
            Duration::from_millis(12),
        );
        assert_eq!(
            line,
            "::1 - - [24/Nov/2026:01:02:03 +0000] \"GET /live/s.flv?app=1&token=***&Play_Token=*** HTTP/1.1\" 403 0 12.0ms"
        );
        assert!(!line.contains("SECRET"));

        let line = access_log_line(
            peer,
            "GET /\"x\x1b HTTP/1.1",
            404,
            0,
            started,
            Duration::ZERO,
        );
        assert!(line.contains("\"GET /\\\"x\\x1b HTTP/1.1\""), "{line}");
    }

    #[test]
    fn redact_tokens_only_touches_token_values() {
        assert_eq!(redact_tokens("/a/b.flv"), "/a/b.flv");
        assert_eq!(redact_tokens("/a?token=x"), "/a?token=***");
        assert_eq!(redact_tokens("/a?tokenless"), "/a?tokenless");
        assert_eq!(
            redact_tokens("GET /a?x=1&token=s#f HTTP/1.1"),
            "GET /a?x=1&token=***#f HTTP/1.1"
        );
    }
}
