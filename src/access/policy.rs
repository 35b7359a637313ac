//! `Access`: the one place that decides publish, play, file and API requests (SPEC section 6).
//! It holds the configured tokens, secrets, auth file and hook URLs, and combines them; it never
//! reads the clock (`now` is Unix seconds from the caller) and never calls a hook itself.
//!
//! The combination rule: every mechanism configured for the action gives Allow, Refuse or "no
//! opinion" (the auth file on play of a stream without a play token). Nothing configured, or only
//! "no opinion": open. Any Allow: allowed by the credentials. Otherwise refused, by the most telling
//! refusal (expired > wrong > missing). A configured hook is then asked about every request the
//! credentials allowed, and its refusal wins; a request the credentials refused never reaches it.

use std::borrow::Cow;
use std::sync::Arc;

use super::authfile::{AuthFile, Entry, LoadError, ReloadOutcome};
use super::hook::HookUrl;
use super::sign::{ct_eq, verify, SignError};
use super::AccessConfig;
use super::{bearer_token, Action, Decision, Query, Refusal, RefuseKind, Request, Secret};

/// Presented tokens tried per request; more are ignored, so a hostile query costs bounded work.
const MAX_TRIES: usize = 8;

/// One mechanism's view of a request.
#[derive(Debug)]
enum Verdict {
    Allow,
    Refuse(Refusal),
    NoOpinion,
}

fn refuse(kind: RefuseKind, reason: &'static str) -> Verdict {
    Verdict::Refuse(Refusal::new(kind, reason))
}

fn rank(kind: RefuseKind) -> u8 {
    match kind {
        RefuseKind::Missing => 0,
        RefuseKind::Wrong => 1,
        RefuseKind::Expired => 2,
        RefuseKind::Hook => 3,
    }
}

/// The tokens a request offers: `?token=` values from every place, then the Bearer header.
fn presented<'a>(query: &'a Query, bearer: Option<&'a str>) -> impl Iterator<Item = &'a str> {
    query.all("token").chain(bearer).take(MAX_TRIES)
}

/// Allow when one presented token equals `want`; Missing when none was presented.
fn token_verdict(want: &Secret, query: &Query, bearer: Option<&str>) -> Verdict {
    let mut any = false;
    for t in presented(query, bearer) {
        any = true;
        if ct_eq(t.as_bytes(), want.as_bytes()) {
            return Verdict::Allow;
        }
    }
    if any {
        refuse(RefuseKind::Wrong, "wrong token")
    } else {
        refuse(RefuseKind::Missing, "a token is required")
    }
}

#[derive(Debug)]
pub struct Access {
    publish_token: Option<Secret>,
    play_token: Option<Secret>,
    publish_sign: Option<Secret>,
    play_sign: Option<Secret>,
    files_token: Option<Secret>,
    api_token: Option<Secret>,
    auth_file: Option<AuthFile>,
    on_publish: Option<Arc<HookUrl>>,
    on_play: Option<Arc<HookUrl>>,
    on_unpublish: Option<Arc<HookUrl>>,
    on_stop: Option<Arc<HookUrl>>,
    public_list: bool,
}

impl Access {
    /// Nothing configured: every request is allowed (the default, like the original).
    pub fn open() -> Access {
        Access::new(&AccessConfig::default()).expect("no auth file to load")
    }

    /// Builds the policy; loads the auth file, whose errors name the line (exit 2 at startup).
    pub fn new(cfg: &AccessConfig) -> Result<Access, LoadError> {
        let auth_file = cfg.auth_file.as_deref().map(AuthFile::open).transpose()?;
        let arc = |u: &Option<HookUrl>| u.clone().map(Arc::new);
        Ok(Access {
            publish_token: cfg.publish_token.clone(),
            play_token: cfg.play_token.clone(),
            publish_sign: cfg.publish_sign_secret.clone(),
            play_sign: cfg.play_sign_secret.clone(),
            files_token: cfg.files_token.clone(),
            api_token: cfg.api_token.clone(),
            auth_file,
            on_publish: arc(&cfg.on_publish),
            on_play: arc(&cfg.on_play),
            on_unpublish: arc(&cfg.on_unpublish),
            on_stop: arc(&cfg.on_stop),
            public_list: cfg.public_list,
        })
    }

    /// Decides `req` at `now` (Unix seconds, for signed URLs).
    pub fn decide(&self, req: &Request, now: u64) -> Decision {
        let bearer = req.bearer.as_ref().map(Secret::as_str);
        let verdicts = match req.action {
            Action::Files => vec![self
                .files_token
                .as_ref()
                .map(|t| token_verdict(t, &req.query, bearer))],
            Action::Publish => vec![
                self.publish_token
                    .as_ref()
                    .map(|t| token_verdict(t, &req.query, bearer)),
                self.auth_file
                    .as_ref()
                    .map(|f| file_publish_verdict(f, req, bearer)),
                self.publish_sign
                    .as_ref()
                    .map(|s| sign_verdict(s, req, now)),
            ],
            Action::Play => vec![
                self.play_token
                    .as_ref()
                    .map(|t| token_verdict(t, &req.query, bearer)),
                self.auth_file
                    .as_ref()
                    .map(|f| file_play_verdict(f, req, bearer)),
                self.play_sign.as_ref().map(|s| sign_verdict(s, req, now)),
            ],
        };
        match combine(verdicts.into_iter().flatten().collect()) {
            Decision::Allow if self.hook(req.action).is_some() => Decision::NeedsHook,
            d => d,
        }
    }

    /// `/api/*` and `/metrics`: with `--api-token`, its value as `Authorization: Bearer T` or
    /// `?token=T` on `target`.
    pub fn check_api(&self, authorization: Option<&str>, target: &str) -> Decision {
        match &self.api_token {
            None => Decision::Allow,
            Some(t) => {
                let q = Query::parse(super::query::split_target(target).1);
                combine(vec![token_verdict(
                    t,
                    &q,
                    authorization.and_then(bearer_token),
                )])
            }
        }
    }

    /// True when `/api/*` and `/metrics` need `--api-token` (the home page then shows less).
    pub fn api_protected(&self) -> bool {
        self.api_token.is_some()
    }

    /// Whether `/api/streams` without the API token names any stream (`--no-public-list` off).
    pub fn public_list(&self) -> bool {
        self.public_list
    }

    /// Whether a viewer who gives no credential at all may play `app/stream`: the anonymous
    /// stream list names only these. A play token, a play signing secret, an auth-file play token
    /// for the stream or a play hook (which might refuse) each make the answer no.
    pub fn anonymous_play(&self, app: &str, stream: &str) -> bool {
        let req = Request {
            action: Action::Play,
            protocol: super::Protocol::HttpFlv,
            app: app.to_string(),
            stream: stream.to_string(),
            query: Query::default(),
            bearer: None,
            peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        // `now` only matters to a signature, and without one the answer is the same at any time.
        self.decide(&req, 0) == Decision::Allow
    }

    /// The hook that has the last word on `action`, if configured.
    pub fn hook(&self, action: Action) -> Option<&Arc<HookUrl>> {
        match action {
            Action::Publish => self.on_publish.as_ref(),
            Action::Play => self.on_play.as_ref(),
            Action::Files => None,
        }
    }

    /// The `--on-unpublish` notice URL.
    pub fn unpublish_hook(&self) -> Option<&Arc<HookUrl>> {
        self.on_unpublish.as_ref()
    }

    /// The `--on-stop` notice URL (a player left).
    pub fn stop_hook(&self) -> Option<&Arc<HookUrl>> {
        self.on_stop.as_ref()
    }

    /// Called by the loop's timer about once a second: re-reads the auth file if it changed.
    pub fn reload(&mut self) -> Option<ReloadOutcome> {
        self.auth_file.as_mut()?.check()
    }

    /// Entries of the auth file in force (None without `--auth-file`).
    pub fn auth_entries(&self) -> Option<usize> {
        self.auth_file.as_ref().map(|f| f.table().len())
    }
}

/// With an auth file, only the streams it lists (or covers by `*`) are published, each with its
/// token.
fn file_publish_verdict(f: &AuthFile, req: &Request, bearer: Option<&str>) -> Verdict {
    match f.table().lookup(&req.app, &req.stream) {
        Some(Entry {
            publish: Some(t), ..
        }) => token_verdict(t, &req.query, bearer),
        Some(_) => refuse(
            RefuseKind::Wrong,
            "the auth file allows no publisher for this stream",
        ),
        None if presented(&req.query, bearer).next().is_some() => {
            refuse(RefuseKind::Wrong, "this stream is not in the auth file")
        }
        None => refuse(RefuseKind::Missing, "this stream is not in the auth file"),
    }
}

/// The auth file speaks on play only for entries with a play token.
fn file_play_verdict(f: &AuthFile, req: &Request, bearer: Option<&str>) -> Verdict {
    match f.table().lookup(&req.app, &req.stream) {
        Some(Entry { play: Some(t), .. }) => token_verdict(t, &req.query, bearer),
        _ => Verdict::NoOpinion,
    }
}

fn sign_verdict(secret: &Secret, req: &Request, now: u64) -> Verdict {
    let Some(sig) = req.query.get("sign") else {
        return refuse(RefuseKind::Missing, "a signed URL is required");
    };
    let expires = req.query.get("expires").unwrap_or("");
    match verify(secret.as_bytes(), &req.app, &req.stream, expires, sig, now) {
        Ok(()) => Verdict::Allow,
        Err(SignError::BadExpires) => refuse(RefuseKind::Wrong, "expires is not a Unix time"),
        Err(SignError::Mismatch) => refuse(RefuseKind::Wrong, "wrong signature"),
        Err(SignError::Expired) => refuse(RefuseKind::Expired, "the signed URL has expired"),
    }
}

/// Any Allow allows; no opinion at all is open; otherwise the most telling refusal.
fn combine(verdicts: Vec<Verdict>) -> Decision {
    let mut best: Option<Refusal> = None;
    for v in verdicts {
        match v {
            Verdict::Allow => return Decision::Allow,
            Verdict::NoOpinion => {}
            Verdict::Refuse(r) => {
                if best.as_ref().is_none_or(|b| rank(r.kind) > rank(b.kind)) {
                    best = Some(r);
                }
            }
        }
    }
    best.map_or(Decision::Allow, Decision::Refuse)
}

/// The decision once the hook answered: its refusal wins (the credentials already allowed).
pub fn after_hook(answer: Result<(), Cow<'static, str>>) -> Decision {
    match answer {
        Ok(()) => Decision::Allow,
        Err(reason) => Decision::Refuse(Refusal::new(RefuseKind::Hook, reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::sign::sign;
    use super::super::Protocol;
    use super::*;
    use std::path::PathBuf;

    const NOW: u64 = 1_700_000_000;

    fn peer() -> std::net::SocketAddr {
        "198.51.100.1:40000".parse().unwrap()
    }

    fn rtmp(action: Action, app: &str, tc: Option<&str>, stream: &str) -> Request {
        Request::rtmp(action, app, tc, stream, peer())
    }

    fn http(action: Action, target: &str, auth: Option<&str>) -> Request {
        let (path, _) = super::super::query::split_target(target);
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let app = parts.next().unwrap_or("");
        let stream = parts.next().unwrap_or("").trim_end_matches(".flv");
        Request::http(action, Protocol::HttpFlv, app, stream, target, auth, peer())
    }

    fn kind(d: &Decision) -> &'static str {
        match d {
            Decision::Allow => "allow",
            Decision::NeedsHook => "hook",
            Decision::Refuse(r) => r.kind.as_str(),
        }
    }

    fn secret(s: &str) -> Option<Secret> {
        Some(Secret::new(s))
    }

    fn auth_file(text: &str, name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rtmpd-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn open_by_default() {
        let a = Access::open();
        for action in [Action::Publish, Action::Play, Action::Files] {
            assert_eq!(
                a.decide(&rtmp(action, "live", None, "cam"), NOW),
                Decision::Allow
            );
        }
        assert_eq!(a.check_api(None, "/api/streams"), Decision::Allow);
        assert!(!a.api_protected());
    }

    #[test]
    fn static_tokens_in_every_place() {
        let a = Access::new(&AccessConfig {
            publish_token: secret("pub"),
            play_token: secret("watch"),
            ..AccessConfig::default()
        })
        .unwrap();
        let p = Action::Publish;
        let v = Action::Play;
        for (req, want) in [
            (rtmp(p, "live", None, "cam"), "missing"),
            (rtmp(p, "live", None, "cam?token=pub"), "allow"),
            (rtmp(p, "live", None, "cam?x=1&token=pub"), "allow"),
            (rtmp(p, "live?token=pub", None, "cam"), "allow"),
            (rtmp(p, "live/?token=pub", None, "cam"), "allow"),
            (
                rtmp(p, "live", Some("rtmp://h/live?token=pub"), "cam"),
                "allow",
            ),
            (rtmp(p, "live", None, "cam?token=pu"), "wrong"),
            (rtmp(p, "live", None, "cam?token=pubb"), "wrong"),
            (rtmp(p, "live", None, "cam?token="), "wrong"),
            (rtmp(p, "live", None, "cam?token=watch"), "wrong"),
            // A wrong token in one place and the right one in another: the right one counts.
            (rtmp(p, "live?token=bad", None, "cam?token=pub"), "allow"),
            (rtmp(v, "live", None, "cam"), "missing"),
            (rtmp(v, "live", None, "cam?token=watch"), "allow"),
            (rtmp(v, "live", None, "cam?token=pub"), "wrong"),
            (http(v, "/live/cam.flv", None), "missing"),
            (http(v, "/live/cam.flv?token=watch", None), "allow"),
            (http(v, "/live/cam.flv?token=wat%63h", None), "allow"),
            (http(v, "/live/cam.flv?token=nope", None), "wrong"),
            (http(v, "/live/cam.flv", Some("Bearer watch")), "allow"),
            (http(v, "/live/cam.flv", Some("Bearer nope")), "wrong"),
            (http(Action::Files, "/live/cam.flv", None), "allow"),
        ] {
            let d = a.decide(&req, NOW);
            assert_eq!(kind(&d), want, "{req:?}");
            assert_eq!(req.stream, "cam", "the query is never part of the name");
        }
    }

    #[test]
    fn refusal_reasons_never_hold_the_token() {
        let a = Access::new(&AccessConfig {
            publish_token: secret("pub"),
            ..AccessConfig::default()
        })
        .unwrap();
        let Decision::Refuse(r) =
            a.decide(&rtmp(Action::Publish, "live", None, "cam?token=guess"), NOW)
        else {
            panic!()
        };
        assert_eq!(r.reason, "wrong token");
        assert!(!r.to_string().contains("guess") && !r.to_string().contains("pub"));
    }

    #[test]
    fn auth_file_entries_and_star() {
        let path = auth_file(
            "live/cam  camkey  camwatch\nlive/*  anykey\ntv/news - newswatch\n",
            "auth.txt",
        );
        let a = Access::new(&AccessConfig {
            auth_file: Some(path),
            ..AccessConfig::default()
        })
        .unwrap();
        assert_eq!(a.auth_entries(), Some(3));
        let p = Action::Publish;
        let v = Action::Play;
        for (app, stream, action, want) in [
            ("live", "cam?token=camkey", p, "allow"),
            ("live", "cam?token=anykey", p, "wrong"), // the exact line wins over *
            ("live", "cam", p, "missing"),
            ("live", "other?token=anykey", p, "allow"),
            ("live", "other?token=camkey", p, "wrong"),
            ("live", "other", p, "missing"),
            ("tv", "news?token=newswatch", p, "wrong"), // `-`: nobody publishes it
            ("tv", "other?token=x", p, "wrong"),        // not in the file
            ("tv", "other", p, "missing"),
            ("live", "cam?token=camwatch", v, "allow"),
            ("live", "cam", v, "missing"),
            ("live", "cam?token=camkey", v, "wrong"),
            ("live", "other", v, "allow"), // no play token: the file has no opinion
            ("tv", "news?token=newswatch", v, "allow"),
            ("tv", "news", v, "missing"),
            ("radio", "x", v, "allow"),
        ] {
            let d = a.decide(&rtmp(action, app, None, stream), NOW);
            assert_eq!(kind(&d), want, "{action:?} {app}/{stream}");
        }
    }

    #[test]
    fn any_mechanism_that_allows_is_enough() {
        let path = auth_file("live/cam camkey\n", "any.txt");
        let a = Access::new(&AccessConfig {
            publish_token: secret("pub"),
            auth_file: Some(path),
            play_token: secret("watch"),
            play_sign_secret: secret("S"),
            ..AccessConfig::default()
        })
        .unwrap();
        let sig = sign(b"S", "live", "cam", NOW);
        let p = Action::Publish;
        let v = Action::Play;
        for (action, stream, want) in [
            (p, "cam?token=pub".to_string(), "allow"),
            (p, "cam?token=camkey".to_string(), "allow"),
            (p, "cam?token=x".to_string(), "wrong"),
            (p, "cam".to_string(), "missing"),
            (v, "cam?token=watch".to_string(), "allow"),
            (v, format!("cam?expires={NOW}&sign={sig}"), "allow"),
            (v, format!("cam?expires={}&sign={sig}", NOW + 1), "wrong"),
            // The most telling refusal: the token is missing, but the link has expired.
            (
                v,
                format!(
                    "cam?expires={}&sign={}",
                    NOW - 1,
                    sign(b"S", "live", "cam", NOW - 1)
                ),
                "expired",
            ),
            (v, "cam".to_string(), "missing"),
        ] {
            let d = a.decide(&rtmp(action, "live", None, &stream), NOW);
            assert_eq!(kind(&d), want, "{action:?} {stream}");
        }
    }

    #[test]
    fn signed_urls_expire_after_their_second() {
        let a = Access::new(&AccessConfig {
            publish_sign_secret: secret("P"),
            play_sign_secret: secret("V"),
            ..AccessConfig::default()
        })
        .unwrap();
        let play = |sig: &str, expires: u64, now: u64| {
            let target = format!("/live/cam.flv?expires={expires}&sign={sig}");
            kind(&a.decide(&http(Action::Play, &target, None), now))
        };
        let s = sign(b"V", "live", "cam", NOW);
        assert_eq!(play(&s, NOW, NOW - 1), "allow");
        assert_eq!(play(&s, NOW, NOW), "allow", "expires == now still plays");
        assert_eq!(
            play(&s, NOW, NOW + 1),
            "expired",
            "one second after expires"
        );
        assert_eq!(
            play(&sign(b"P", "live", "cam", NOW), NOW, NOW),
            "wrong",
            "the publish secret"
        );
        assert_eq!(
            play(&sign(b"V", "live", "cam2", NOW), NOW, NOW),
            "wrong",
            "another stream"
        );
        assert_eq!(
            play(&sign(b"V", "app", "cam", NOW), NOW, NOW),
            "wrong",
            "another app"
        );
        let no_expires = http(Action::Play, &format!("/live/cam.flv?sign={s}"), None);
        assert_eq!(kind(&a.decide(&no_expires, NOW)), "wrong");
        assert_eq!(
            kind(&a.decide(&http(Action::Play, "/live/cam.flv", None), NOW)),
            "missing"
        );
        let publish = format!("cam?expires={NOW}&sign={}", sign(b"P", "live", "cam", NOW));
        assert_eq!(
            kind(&a.decide(&rtmp(Action::Publish, "live", None, &publish), NOW)),
            "allow"
        );
    }

    /// Issue 24 item 2: the anonymous stream list names a stream only when a viewer without any
    /// credential may play it; each play mechanism (auth-file play token for that stream, play
    /// token, play signing secret, play hook) makes the answer no.
    #[test]
    fn issue24_item2_anonymous_play_follows_every_play_mechanism() {
        let file = auth_file("live/open k1\nlive/private k2 w2\n", "anon.txt");
        let with_file = Access::new(&AccessConfig {
            auth_file: Some(file.clone()),
            publish_token: secret("pub"),
            api_token: secret("api"),
            ..AccessConfig::default()
        })
        .unwrap();
        assert!(with_file.anonymous_play("live", "open"));
        assert!(
            with_file.anonymous_play("live", "unlisted"),
            "publish rules do not matter"
        );
        assert!(
            !with_file.anonymous_play("live", "private"),
            "its play token"
        );
        assert!(Access::open().anonymous_play("live", "x"));
        assert!(Access::open().public_list());
        let url = HookUrl::parse("http://127.0.0.1:9/hook").unwrap();
        for (what, cfg) in [
            (
                "play token",
                AccessConfig {
                    play_token: secret("w"),
                    ..AccessConfig::default()
                },
            ),
            (
                "sign secret",
                AccessConfig {
                    play_sign_secret: secret("s"),
                    ..AccessConfig::default()
                },
            ),
            (
                "play hook",
                AccessConfig {
                    on_play: Some(url.clone()),
                    ..AccessConfig::default()
                },
            ),
            (
                "auth file and play token",
                AccessConfig {
                    auth_file: Some(file.clone()),
                    play_token: secret("w"),
                    ..AccessConfig::default()
                },
            ),
        ] {
            let a = Access::new(&cfg).unwrap();
            assert!(!a.anonymous_play("live", "open"), "{what}");
        }
        let quiet = Access::new(&AccessConfig {
            public_list: false,
            ..AccessConfig::default()
        })
        .unwrap();
        assert!(!quiet.public_list());
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn hooks_have_the_last_word_on_what_credentials_allow() {
        let url = HookUrl::parse("http://127.0.0.1:9/hook").unwrap();
        let a = Access::new(&AccessConfig {
            publish_token: secret("pub"),
            on_publish: Some(url.clone()),
            on_play: Some(url),
            ..AccessConfig::default()
        })
        .unwrap();
        let d = |stream: &str, action| kind(&a.decide(&rtmp(action, "live", None, stream), NOW));
        assert_eq!(d("cam?token=pub", Action::Publish), "hook");
        assert_eq!(
            d("cam", Action::Publish),
            "missing",
            "the hook is not asked"
        );
        assert_eq!(
            d("cam", Action::Play),
            "hook",
            "no play credentials: the hook alone"
        );
        assert_eq!(after_hook(Ok(())), Decision::Allow);
        let Decision::Refuse(r) = after_hook(Err("hook answered 403".into())) else {
            panic!()
        };
        assert_eq!(
            (r.kind, r.reason.as_ref()),
            (RefuseKind::Hook, "hook answered 403")
        );
    }

    #[test]
    fn files_and_api_tokens() {
        let a = Access::new(&AccessConfig {
            files_token: secret("F"),
            api_token: secret("A"),
            ..AccessConfig::default()
        })
        .unwrap();
        let f = |t: &str, auth| kind(&a.decide(&http(Action::Files, t, auth), NOW));
        assert_eq!(f("/flv/live/cam.flv", None), "missing");
        assert_eq!(f("/flv/live/cam.flv?token=F", None), "allow");
        assert_eq!(f("/flv/live/cam.flv?token=A", None), "wrong");
        assert_eq!(f("/flv/live/cam.flv", Some("Bearer F")), "allow");
        assert_eq!(
            kind(&a.decide(&rtmp(Action::Play, "live", None, "cam"), NOW)),
            "allow"
        );
        assert!(a.api_protected());
        assert_eq!(kind(&a.check_api(None, "/api/streams")), "missing");
        assert_eq!(
            kind(&a.check_api(Some("Bearer A"), "/api/streams")),
            "allow"
        );
        assert_eq!(kind(&a.check_api(None, "/metrics?token=A")), "allow");
        assert_eq!(
            kind(&a.check_api(Some("Bearer F"), "/metrics?token=x")),
            "wrong"
        );
    }

    #[test]
    fn reload_through_the_policy() {
        let path = auth_file("live/cam k1\n", "reload.txt");
        let mut a = Access::new(&AccessConfig {
            auth_file: Some(path.clone()),
            ..AccessConfig::default()
        })
        .unwrap();
        let pubk = |a: &Access, k: &str| {
            kind(&a.decide(
                &rtmp(Action::Publish, "live", None, &format!("cam?token={k}")),
                NOW,
            ))
        };
        assert_eq!(a.reload(), None);
        std::fs::write(&path, "live/cam k2 \n").unwrap();
        assert_eq!(a.reload(), Some(ReloadOutcome::Loaded(1)));
        assert_eq!((pubk(&a, "k1"), pubk(&a, "k2")), ("wrong", "allow"));
        std::fs::write(&path, "live/cam k3\nlive/x\n").unwrap();
        assert!(a.reload().unwrap().to_string().contains("line 2:"));
        assert_eq!(
            (pubk(&a, "k2"), pubk(&a, "k3")),
            ("allow", "wrong"),
            "old table kept"
        );
        assert!(Access::open().auth_entries().is_none());
        let bad = auth_file("live/cam\n", "bad.txt");
        let e = Access::new(&AccessConfig {
            auth_file: Some(bad),
            ..AccessConfig::default()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "line 1: no publish token (write - for none)");
    }

    /// The shell block of docs/access.md, run as it is: its openssl signature must be accepted.
    #[test]
    fn signed_url_from_the_docs_openssl_example() {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("RTMPD_REQUIRE_TOOLS").is_none(),
                "openssl not found"
            );
            eprintln!("skipped: openssl not found");
            return;
        }
        let doc = include_str!("../../docs/access.md");
        let block = doc
            .split("```sh\n")
            .skip(1)
            .filter_map(|b| b.split_once("```").map(|(b, _)| b))
            .find(|b| b.contains("openssl dgst -sha256 -hmac"))
            .expect("docs/access.md has the openssl example");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(block)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let secret = block
            .lines()
            .find_map(|l| l.strip_prefix("SECRET='"))
            .and_then(|l| l.split_once('\'').map(|(s, _)| s))
            .unwrap();
        let target = url.strip_prefix("http://127.0.0.1:8501").unwrap();
        let expires: u64 = Query::parse(super::super::query::split_target(target).1)
            .get("expires")
            .unwrap()
            .parse()
            .unwrap();
        let check = |secret: &str, now: u64| {
            let a = Access::new(&AccessConfig {
                play_sign_secret: Some(Secret::new(secret)),
                ..AccessConfig::default()
            })
            .unwrap();
            kind(&a.decide(&http(Action::Play, target, None), now))
        };
        assert_eq!(check(secret, expires - 3600), "allow", "{url}");
        assert_eq!(check(secret, expires), "allow");
        assert_eq!(check(secret, expires + 1), "expired");
        assert_eq!(check("another secret", expires), "wrong");
    }
}
