//! Access control: who may publish, play and fetch recordings. Owns the request description every
//! protocol hands in, the decision (static tokens, the auth file, signed URLs, HTTP hooks), the
//! refusal replies and the connection/stream limits. Sans-IO apart from the hook worker pool and
//! the auth file's `stat`: no sockets on the loop, no clock reads (`now` is passed in). It does not
//! parse protocols or keep streams: the origin core calls it with what the protocols parsed.
//!
//! - `config`: `AccessConfig` and `LimitsConfig`, the settings `crate::config` fills in.
//! - `query` (`codec::query`, re-exported): (name, query) splitting, query parsing, masking
//!   credentials for logs.
//! - `sign`: constant-time comparison, HMAC-SHA256, signed expiring URLs.
//! - `authfile`: the per-stream token table and its reload check.
//! - `policy`: `Access::decide`, the combination rule of SPEC section 6.
//! - `hook`: `--on-publish`/`--on-play` checks and `--on-unpublish`/`--on-stop` notices, on
//!   worker threads.
//! - `log_line`: the one log line of a refusal (its RTMP status or HTTP response is the
//!   server glue's: `server::reply`).
//! - `limits`: counts of connections, streams, players and publishers against their caps.
//! - `trusted`: `--trusted-proxy` blocks, the addresses never capped, `X-Forwarded-For`/`Forwarded`.
//! - `proxy_protocol`: the PROXY protocol header (v1, v2) a TCP proxy sends before the client's bytes.
//!
//! How the origin core uses it (one place for every protocol):
//!
//! ```text
//! publish/play request `id`  -> req = Request::rtmp(..) or Request::http(..)
//!   access.decide(&req, unix_now):
//!     Allow      -> accept(id)
//!     Refuse(r)  -> log log_line(&req, &r); reject(id) with server::reply::rtmp(&r) or ::http(&r, ..)
//!     NeedsHook  -> pool.ask(id, access.hook(req.action)?, event, &req) (Err(r): refuse as above)
//! the Waker fires          -> while let Some(a) = pool.poll_answer(): a.decision() for request a.id
//! the 1 s timer            -> if let Some(o) = access.reload(): log o (error level if o.is_error())
//! a publisher/player leaves -> pool.notify(access.unpublish_hook()/stop_hook(), ..)
//! ```

pub mod authfile;
pub mod config;
pub mod hook;
pub mod limits;
pub mod policy;
pub mod proxy_protocol;
pub mod sign;
pub mod trusted;

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

pub use crate::codec::query;
pub use config::{AccessConfig, LimitsConfig};
pub use policy::Access;
pub use query::{mask, Query};

/// A credential (token or secret). `Debug` and `Display` print `***`, so a config or request
/// printed whole never shows it; `as_str` is for comparisons only.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What the client asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Publish,
    Play,
    /// Fetch a recording from the static service (`--files-token`).
    Files,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
            Action::Files => "files",
        }
    }
}

/// The protocol a request came in on (for hooks and logs; the decision is the same for all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Rtmp,
    HttpFlv,
    WsFlv,
    /// A viewer of the FLV gateway.
    Gateway,
    Files,
    /// A WHEP viewer (`POST /{app}/{stream}/whep`).
    WebRtc,
    /// SRT publish and play (`--srt-port`).
    Srt,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::HttpFlv => "http-flv",
            Protocol::WsFlv => "ws-flv",
            Protocol::Gateway => "gateway",
            Protocol::Files => "files",
            Protocol::WebRtc => "webrtc",
            Protocol::Srt => "srt",
        }
    }

    pub fn is_http(self) -> bool {
        !matches!(self, Protocol::Rtmp | Protocol::Srt)
    }
}

/// One publish, play or file request, as the protocol parsed it. `app` and `stream` never carry
/// a query: the constructors split it off into `query`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    pub protocol: Protocol,
    pub app: String,
    pub stream: String,
    /// The parameters of every place the client could put them (stream name, connect app,
    /// tcUrl, HTTP URL).
    pub query: Query,
    /// `Authorization: Bearer T` of an HTTP request.
    pub bearer: Option<Secret>,
    pub peer: SocketAddr,
}

impl Request {
    /// An RTMP publish or play: `connect_app` and `tc_url` from the connect command, `stream_name`
    /// from publish/play, each possibly with a `?query`.
    pub fn rtmp(
        action: Action,
        connect_app: &str,
        tc_url: Option<&str>,
        stream_name: &str,
        peer: SocketAddr,
    ) -> Request {
        let (stream, q_stream) = query::split_stream(stream_name);
        let (app, q_app) = query::split_app(connect_app);
        let mut q = Query::parse(q_stream);
        q.add(q_app);
        if let Some(tc) = tc_url {
            q.add(query::split_tc_url(tc).1);
        }
        Request {
            action,
            protocol: Protocol::Rtmp,
            app: app.to_string(),
            stream: stream.to_string(),
            query: q,
            bearer: None,
            peer,
        }
    }

    /// An HTTP request (HTTP-FLV, WS-FLV, a gateway viewer, a recording): `app`/`stream` from the
    /// route, `target` the request-target (its query is used), `authorization` the header value.
    pub fn http(
        action: Action,
        protocol: Protocol,
        app: &str,
        stream: &str,
        target: &str,
        authorization: Option<&str>,
        peer: SocketAddr,
    ) -> Request {
        Request {
            action,
            protocol,
            app: app.to_string(),
            stream: stream.to_string(),
            query: Query::parse(query::split_target(target).1),
            bearer: authorization.and_then(bearer_token).map(Secret::new),
            peer,
        }
    }
}

/// The token of an `Authorization: Bearer T` header value (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Why a request is refused; the kind picks the reply (HTTP 401 or 403).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefuseKind {
    /// No credential where one is required (HTTP 401).
    Missing,
    /// A credential that does not match (HTTP 403).
    Wrong,
    /// A signed URL past its `expires` (HTTP 403).
    Expired,
    /// The `--on-publish`/`--on-play` hook said no, failed or timed out (HTTP 403).
    Hook,
}

impl RefuseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseKind::Missing => "missing",
            RefuseKind::Wrong => "wrong",
            RefuseKind::Expired => "expired",
            RefuseKind::Hook => "hook",
        }
    }
}

/// A refusal with a reason fit for a log line and a reply body: it never holds a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefuseKind,
    pub reason: Cow<'static, str>,
}

impl Refusal {
    pub fn new(kind: RefuseKind, reason: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal {
            kind,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The one log line of a refusal: action, stream, peer, protocol, kind and reason; no credential
/// (the query is not printed at all).
pub fn log_line(req: &Request, refusal: &Refusal) -> String {
    format!(
        "refused {} {}/{} from {} ({}): {} ({})",
        req.action.as_str(),
        req.app,
        req.stream,
        req.peer,
        req.protocol.as_str(),
        refusal.reason,
        refusal.kind.as_str()
    )
}

/// The answer to a request.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Refuse(Refusal),
    /// Every other check allows; the `--on-publish`/`--on-play` hook has the last word. The
    /// request waits (`hook::HookPool::ask`) until its answer comes back.
    NeedsHook,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "192.0.2.7:50000".parse().unwrap()
    }

    #[test]
    fn rtmp_request_takes_every_place() {
        let r = Request::rtmp(
            Action::Publish,
            "live?token=A",
            Some("rtmp://h:1935/live?token=A&x=1"),
            "cam?token=B",
            peer(),
        );
        assert_eq!((r.app.as_str(), r.stream.as_str()), ("live", "cam"));
        assert_eq!(r.query.all("token").collect::<Vec<_>>(), ["B", "A"]);
        assert_eq!(r.query.get("x"), Some("1"));
        let plain = Request::rtmp(Action::Play, "live", None, "cam", peer());
        assert!(plain.query.is_empty() && plain.stream == "cam");
    }

    #[test]
    fn http_request_and_bearer() {
        let r = Request::http(
            Action::Play,
            Protocol::WsFlv,
            "live",
            "cam",
            "/live/cam.flv?token=T",
            Some("Bearer  abc "),
            peer(),
        );
        assert_eq!(r.query.get("token"), Some("T"));
        assert_eq!(r.bearer.as_ref().map(Secret::as_str), Some("abc"));
        for (h, want) in [
            ("bearer x", Some("x")),
            ("Basic x", None),
            ("Bearer", None),
            ("Bearer ", None),
        ] {
            assert_eq!(bearer_token(h), want, "{h}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let r = Request::http(
            Action::Play,
            Protocol::HttpFlv,
            "live",
            "cam",
            "/live/cam.flv?token=s3cret&sign=s3cret&a=b",
            Some("Bearer s3cret"),
            peer(),
        );
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("\"a\": \"b\""),
            "{shown}"
        );
    }

    #[test]
    fn refusal_log_line() {
        let wrong = Refusal::new(RefuseKind::Wrong, "wrong token");
        let req = Request::rtmp(
            Action::Publish,
            "live?token=s3cret",
            None,
            "cam?token=s3cret",
            "192.0.2.1:1234".parse().unwrap(),
        );
        let line = log_line(&req, &wrong);
        assert_eq!(
            line,
            "refused publish live/cam from 192.0.2.1:1234 (rtmp): wrong token (wrong)"
        );
        let mut req = req;
        req.protocol = Protocol::HttpFlv;
        assert!(!log_line(&req, &wrong).contains("s3cret"));
    }

    /// Hostile text through every parser: no panic, bounded output (a small LCG, so it replays).
    #[test]
    fn hostile_input_never_panics() {
        let alphabet: Vec<char> = "?&=%#/:[]@ \t\n*-_aZ09fF\u{e9}\u{1f600}\u{0}+"
            .chars()
            .collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let table = authfile::Table::parse("live/* k\n").unwrap();
        for _ in 0..3000 {
            let len = (next() % 40) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let q = Query::parse(&s);
            assert!(q.iter().count() <= query::MAX_PARAMS);
            let _ = (mask(&s), query::mask_query(&s), query::split_target(&s));
            let _ = hook::HookUrl::parse(&s);
            let _ = hook::HookUrl::parse(&format!("http://{s}"));
            let _ = authfile::Table::parse(&s);
            let _ = table.lookup(&s, &s);
            let _ = sign::verify(b"k", "a", "b", &s, &s, 0);
            let _ = bearer_token(&s);
            let r = Request::rtmp(Action::Play, &s, Some(&s), &s, peer());
            assert!(!r.stream.contains('?') && !r.app.contains('?'));
            let _ = hook::body(hook::Event::Play, &r);
            let _ = Access::open().decide(&r, 0);
        }
    }
}
