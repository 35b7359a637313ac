//! An access refusal as each client understands it: the RTMP refusal (the session sends
//! `NetStream.Publish.Unauthorized` or `NetStream.Play.Failed`; OBS stops retrying on the first,
//! where `BadName` makes encoders retry forever), HTTP 401/403 with CORS so a page can show the
//! reason, 503 for a limit. Sends nothing itself; the one log line is `access::log_line`.

use crate::access::limits::LimitHit;
use crate::access::{Action, Refusal, RefuseKind};
use crate::http::response::reason;
use crate::rtmp::session::Refusal as RtmpRefusal;

/// What the RTMP session is told; every access refusal is `Unauthorized` (see the module doc).
pub fn rtmp(_refusal: &Refusal) -> RtmpRefusal {
    RtmpRefusal::Unauthorized
}

/// The onStatus code the client will see for a refused `action` (for logs and tests).
pub fn rtmp_code(action: Action) -> &'static str {
    match action {
        Action::Publish => "NetStream.Publish.Unauthorized",
        Action::Play | Action::Files => "NetStream.Play.Failed",
    }
}

/// 401 when a credential is missing, 403 when it is wrong, expired or the hook said no.
pub fn http_status(kind: RefuseKind) -> u16 {
    match kind {
        RefuseKind::Missing => 401,
        RefuseKind::Wrong | RefuseKind::Expired | RefuseKind::Hook => 403,
    }
}

fn http_response(
    status: u16,
    extra: &str,
    body: &str,
    keep_alive: bool,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nServer: rtmpd\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\n\
         {extra}Connection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The whole HTTP answer to a refused HTTP-FLV, WS-FLV (before the upgrade), file or API request.
/// The body is the reason, which never holds a credential.
pub fn http(refusal: &Refusal, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let status = http_status(refusal.kind);
    // A 401 names the scheme that works (RFC 9110); the header is exposed so a page can read it.
    let extra = if status == 401 {
        "WWW-Authenticate: Bearer realm=\"rtmpd\"\r\n\
         Access-Control-Expose-Headers: WWW-Authenticate\r\n"
    } else {
        ""
    };
    let body = format!("{} {}: {}.\n", status, reason(status), refusal.reason);
    http_response(status, extra, &body, keep_alive, head_only)
}

/// 503 for a newcomer over a limit; the connection closes, others are untouched.
pub fn http_limit(hit: &LimitHit) -> Vec<u8> {
    let body = format!("503 Service Unavailable: {hit}.\n");
    http_response(503, "Retry-After: 10\r\n", &body, false, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::limits::Limit;

    #[test]
    fn http_refusals() {
        let missing = Refusal::new(RefuseKind::Missing, "a token is required");
        let r = String::from_utf8(http(&missing, true, false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{r}");
        assert!(r.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(r.contains("WWW-Authenticate: Bearer realm=\"rtmpd\"\r\n"));
        assert!(r.contains("Connection: keep-alive\r\n"));
        let body = "401 Unauthorized: a token is required.\n";
        assert!(r.ends_with(&format!("Content-Length: {}\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nWWW-Authenticate: Bearer realm=\"rtmpd\"\r\nAccess-Control-Expose-Headers: WWW-Authenticate\r\nConnection: keep-alive\r\n\r\n{body}", body.len())), "{r}");
        for kind in [RefuseKind::Wrong, RefuseKind::Expired, RefuseKind::Hook] {
            let r = String::from_utf8(http(&Refusal::new(kind, "no"), false, true)).unwrap();
            assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{r}");
            assert!(r.contains("Access-Control-Allow-Origin: *\r\n") && !r.contains("WWW-Auth"));
            assert!(r.ends_with("Connection: close\r\n\r\n"), "HEAD: no body");
        }
        let r = String::from_utf8(http_limit(&LimitHit {
            limit: Limit::PerIp,
            max: 2,
        }))
        .unwrap();
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(r.contains("Access-Control-Allow-Origin: *") && r.contains("Retry-After: 10"));
        assert!(
            r.ends_with(
                "\r\n\r\n503 Service Unavailable: too many connections from this address (2).\n"
            ),
            "{r}"
        );
    }

    #[test]
    fn rtmp_refusals() {
        let wrong = Refusal::new(RefuseKind::Wrong, "wrong token");
        assert_eq!(rtmp(&wrong), RtmpRefusal::Unauthorized);
        assert_eq!(rtmp_code(Action::Publish), "NetStream.Publish.Unauthorized");
        assert_eq!(rtmp_code(Action::Play), "NetStream.Play.Failed");
    }
}
