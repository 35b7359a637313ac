//! The access-control and limit options of issue 12 (tokens, auth file, signing secrets, hooks,
//! API and files tokens, connection and stream caps): their structs, their `--help` rows per mode
//! and their validation. What the values mean is `crate::access`'s business.

use std::path::PathBuf;
use std::time::Duration;

use getopts::Options;

use super::{err, ConfigError};
pub use crate::access::{AccessConfig, LimitsConfig};

/// Which process the access and limit options are for: each takes only what it can enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AccessSet {
    Origin,
    FlvGateway,
    FileGateway,
}

pub(super) fn options(opts: &mut Options, set: AccessSet) {
    use AccessSet::*;
    let all = [Origin, FlvGateway, FileGateway];
    let viewers = [Origin, FlvGateway];
    let rows: &[(&[AccessSet], &str, &str, &str)] = &[
        (&[Origin], "publish-token", "publishers must give ?token=T (stream key, app or tcUrl) [none]", "T"),
        (&viewers, "play-token", "players must give ?token=T (RTMP, HTTP-FLV, WS-FLV) [none]", "T"),
        (&viewers, "auth-file", "per-stream tokens, lines 'app/stream publish_token [play_token]', re-read on change [none]", "F"),
        (&viewers, "sign-secret", "accept ?expires=UNIX&sign=HMAC-SHA256(S, \"app/stream:expires\") for publish and play [none]", "S"),
        (&[Origin], "publish-sign-secret", "the signing secret for publish only [--sign-secret]", "S"),
        (&viewers, "play-sign-secret", "the signing secret for play only [--sign-secret]", "S"),
        (&[Origin], "on-publish", "POST each publish as JSON to this http:// URL; 2xx allows [none]", "URL"),
        (&viewers, "on-play", "POST each play as JSON to this http:// URL; 2xx allows [none]", "URL"),
        (&[Origin], "on-unpublish", "POST a notice when a publisher leaves [none]", "URL"),
        (&viewers, "on-stop", "POST a notice when a player leaves [none]", "URL"),
        (&viewers, "hook-timeout", "seconds a hook may take; no answer in time refuses [3]", "SECS"),
        (&viewers, "api-token", "/api/* and /metrics need Authorization: Bearer T or ?token=T [none]", "T"),
        (&[Origin, FileGateway], "files-token", "recordings on the static service need ?token=T [none]", "T"),
        (&all, "max-connections", "connections in all, newcomers over it closed [3/4 of the open-file limit]", "N"),
        (&all, "max-per-ip", "connections from one address, not loopback or --trusted-proxy ones; 0 = no cap [200]", "N"),
        (&viewers, "max-streams", "live streams (gateway: upstream pulls); 0 = no cap [1000]", "N"),
        (&viewers, "max-players-per-stream", "players of one stream; 0 = no cap [0]", "N"),
        (&[Origin], "max-publishers-per-ip", "streams published from one address; 0 = no cap [32]", "N"),
        (&viewers, "max-waiting-per-stream", "players waiting for a stream not live yet; 0 = no cap [1000]", "N"),
    ];
    for &(sets, name, help, hint) in rows {
        if sets.contains(&set) {
            opts.optopt("", name, help, hint);
        }
    }
    if set == Origin {
        opts.optflag(
            "",
            "no-public-list",
            "/api/streams without the API token names no stream (the pages then ask for the name)",
        );
    }
    opts.optmulti(
        "",
        "trusted-proxy",
        "a proxy in front of rtmpd (address or CIDR, repeatable): never capped per address, its PROXY or X-Forwarded-For header names the client [none]",
        "CIDR",
    );
    opts.optflag(
        "",
        "proxy-protocol",
        "connections from a --trusted-proxy start with a PROXY protocol header (v1/v2), on every listener",
    );
}

/// The value of an option that only some sets define (getopts panics on an undefined name).
fn opt_in(m: &getopts::Matches, set: AccessSet, origin_only: bool, name: &str) -> Option<String> {
    if origin_only && set != AccessSet::Origin {
        return None;
    }
    m.opt_str(name)
}

/// A token or secret: non-empty, at most 1024 bytes, no spaces or control characters (it has to
/// survive a URL, an encoder's stream-key field and the auth file). Never echoed in the error.
fn secret_opt(
    value: Option<String>,
    name: &str,
) -> Result<Option<crate::access::Secret>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > 1024 => {
            err(format!("--{name}: between 1 and 1024 bytes"))
        }
        Some(v) if v.bytes().any(|b| b <= b' ' || b == 0x7f) => {
            err(format!("--{name}: no spaces or control characters"))
        }
        Some(v) => Ok(Some(crate::access::Secret::new(v))),
    }
}

fn hook_opt(
    value: Option<String>,
    name: &str,
) -> Result<Option<crate::access::hook::HookUrl>, ConfigError> {
    value
        .map(|u| {
            crate::access::hook::HookUrl::parse(&u)
                .map_err(|e| ConfigError(format!("--{name} '{}': {e}", crate::access::mask(&u))))
        })
        .transpose()
}

pub(super) fn access_config(
    m: &getopts::Matches,
    set: AccessSet,
) -> Result<AccessConfig, ConfigError> {
    let origin = |name| opt_in(m, set, true, name);
    let viewers = |name| {
        if set == AccessSet::FileGateway {
            None
        } else {
            m.opt_str(name)
        }
    };
    let both_sign = secret_opt(viewers("sign-secret"), "sign-secret")?;
    let auth_file = viewers("auth-file").map(PathBuf::from);
    if let Some(f) = &auth_file {
        // Checked now so a bad file stops the start with its line number; the server loads it again.
        crate::access::authfile::load(f).map_err(|e| ConfigError(format!("--auth-file: {e}")))?;
    }
    let hook_timeout = match viewers("hook-timeout") {
        None => Duration::from_secs(3),
        Some(s) => match s.parse::<f64>() {
            Ok(v) if (0.1..=60.0).contains(&v) => {
                Duration::from_millis((v * 1000.0).round() as u64)
            }
            _ => {
                return err(format!(
                    "--hook-timeout: '{s}' is not a number of seconds between 0.1 and 60"
                ))
            }
        },
    };
    Ok(AccessConfig {
        publish_token: secret_opt(origin("publish-token"), "publish-token")?,
        play_token: secret_opt(viewers("play-token"), "play-token")?,
        auth_file,
        publish_sign_secret: secret_opt(origin("publish-sign-secret"), "publish-sign-secret")?
            .or_else(|| {
                if set == AccessSet::Origin {
                    both_sign.clone()
                } else {
                    None
                }
            }),
        play_sign_secret: secret_opt(viewers("play-sign-secret"), "play-sign-secret")?
            .or(both_sign),
        on_publish: hook_opt(origin("on-publish"), "on-publish")?,
        on_play: hook_opt(viewers("on-play"), "on-play")?,
        on_unpublish: hook_opt(origin("on-unpublish"), "on-unpublish")?,
        on_stop: hook_opt(viewers("on-stop"), "on-stop")?,
        hook_timeout,
        api_token: secret_opt(viewers("api-token"), "api-token")?,
        files_token: secret_opt(
            if set == AccessSet::FlvGateway {
                None
            } else {
                m.opt_str("files-token")
            },
            "files-token",
        )?,
        public_list: !(set == AccessSet::Origin && m.opt_present("no-public-list")),
    })
}

pub(super) fn limits_config(
    m: &getopts::Matches,
    set: AccessSet,
) -> Result<LimitsConfig, ConfigError> {
    let d = LimitsConfig::default();
    let count = |name: &str, default: usize, defined: bool| -> Result<usize, ConfigError> {
        if !defined {
            return Ok(default);
        }
        match m.opt_str(name) {
            None => Ok(default),
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= 100_000_000)
                .ok_or_else(|| {
                    ConfigError(format!("--{name}: '{s}' is not a count (0-100000000)"))
                }),
        }
    };
    let viewers = set != AccessSet::FileGateway;
    let max_connections = match m.opt_str("max-connections") {
        None => None,
        Some(s) => Some(
            s.parse::<usize>()
                .ok()
                .filter(|&n| (1..=100_000_000).contains(&n))
                .ok_or_else(|| {
                    ConfigError(format!(
                        "--max-connections: '{s}' is not a count (1-100000000)"
                    ))
                })?,
        ),
    };
    let mut trusted = Vec::new();
    for s in m.opt_strs("trusted-proxy") {
        trusted.push(
            s.parse()
                .map_err(|e| ConfigError(format!("--trusted-proxy: {e}")))?,
        );
    }
    let proxy_protocol = m.opt_present("proxy-protocol");
    if proxy_protocol && trusted.is_empty() {
        return err(
            "--proxy-protocol needs --trusted-proxy: PROXY headers are taken from trusted proxies only",
        );
    }
    Ok(LimitsConfig {
        max_connections,
        trusted_proxies: crate::access::trusted::Trusted(trusted),
        proxy_protocol,
        max_per_ip: count("max-per-ip", d.max_per_ip, true)?,
        max_streams: count("max-streams", d.max_streams, viewers)?,
        max_players_per_stream: count("max-players-per-stream", d.max_players_per_stream, viewers)?,
        max_waiting_per_stream: count("max-waiting-per-stream", d.max_waiting_per_stream, viewers)?,
        max_publishers_per_ip: count(
            "max-publishers-per-ip",
            d.max_publishers_per_ip,
            set == AccessSet::Origin,
        )?,
    })
}

/// The `--print-config` lines of the access and limit options of `set`: a credential prints as
/// `***` when given (never its value), `(none)` when not.
pub(super) fn render(out: &mut String, set: AccessSet, a: &AccessConfig, l: &LimitsConfig) {
    use std::fmt::Write as _;
    use AccessSet::*;
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{name:<18} {value}");
    };
    let secret = |s: &Option<crate::access::Secret>| if s.is_some() { "***" } else { "(none)" };
    let hook = |h: &Option<crate::access::hook::HookUrl>| {
        h.as_ref().map_or("(none)".to_string(), |h| h.to_string())
    };
    let origin = set == Origin;
    let viewers = set != FileGateway;
    if origin {
        line("publish-token", &secret(&a.publish_token));
    }
    if viewers {
        line("play-token", &secret(&a.play_token));
        let file = a
            .auth_file
            .as_ref()
            .map_or("(none)".to_string(), |f| f.display().to_string());
        line("auth-file", &file);
        // Both secrets were given separately or through --sign-secret; the effective ones print.
        let both = a.play_sign_secret.is_some() && (!origin || a.publish_sign_secret.is_some());
        line("sign-secret", &if both { "***" } else { "(none)" });
    }
    if origin {
        line("publish-sign-secret", &secret(&a.publish_sign_secret));
    }
    if viewers {
        line("play-sign-secret", &secret(&a.play_sign_secret));
    }
    if origin {
        line("on-publish", &hook(&a.on_publish));
    }
    if viewers {
        line("on-play", &hook(&a.on_play));
    }
    if origin {
        line("on-unpublish", &hook(&a.on_unpublish));
    }
    if viewers {
        line("on-stop", &hook(&a.on_stop));
        line("hook-timeout", &(a.hook_timeout.as_secs_f64()));
        line("api-token", &secret(&a.api_token));
    }
    if origin {
        line("no-public-list", &!a.public_list);
    }
    if set != FlvGateway {
        line("files-token", &secret(&a.files_token));
    }
    let conns = l.max_connections.map_or_else(
        || "(3/4 of the open-file limit)".to_string(),
        |n| n.to_string(),
    );
    line("max-connections", &conns);
    line("max-per-ip", &l.max_per_ip);
    if viewers {
        line("max-streams", &l.max_streams);
        line("max-players-per-stream", &l.max_players_per_stream);
        line("max-waiting-per-stream", &l.max_waiting_per_stream);
    }
    if origin {
        line("max-publishers-per-ip", &l.max_publishers_per_ip);
    }
    let trusted: Vec<String> = l.trusted_proxies.0.iter().map(|c| c.to_string()).collect();
    line(
        "trusted-proxy",
        &if trusted.is_empty() {
            "(none)".to_string()
        } else {
            trusted.join(" ")
        },
    );
    line(
        "proxy-protocol",
        &if l.proxy_protocol { "on" } else { "off" },
    );
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Mode, OriginConfig};
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn origin(a: &[&str]) -> Result<OriginConfig, ConfigError> {
        let v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        parse(&v).map(|m| match m {
            Mode::Origin(c) => c,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn print_config_never_shows_a_secret() {
        let Ok(Mode::PrintConfig(text)) = parse(&args(
            "--publish-token s3cr --play-token s3cr --api-token s3cr --sign-secret s3cr --on-play http://h/p?token=s3cr --print-config",
        )) else {
            panic!()
        };
        assert!(!text.contains("s3cr"), "{text}");
        for l in [
            "publish-token",
            "play-token",
            "api-token",
            "sign-secret",
            "play-sign-secret",
        ] {
            assert!(
                text.lines().any(|t| t.split_whitespace().eq([l, "***"])),
                "{l}: {text}"
            );
        }
        assert!(text
            .lines()
            .any(|t| t.split_whitespace().eq(["files-token", "(none)"])));
    }

    #[test]
    fn access_is_off_by_default() {
        let c = origin(&[]).unwrap();
        let a = &c.access;
        assert!(a.publish_token.is_none() && a.play_token.is_none() && a.auth_file.is_none());
        assert!(a.publish_sign_secret.is_none() && a.play_sign_secret.is_none());
        assert!(a.on_publish.is_none() && a.on_play.is_none() && a.api_token.is_none());
        assert!(a.files_token.is_none());
        assert_eq!(a.hook_timeout, Duration::from_secs(3));
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(
            (
                c.limits.max_connections,
                c.limits.max_per_ip,
                c.limits.max_streams
            ),
            (None, 200, 1000)
        );
    }

    #[test]
    fn access_options_parse() {
        let c = origin(&[
            "--publish-token",
            "pub",
            "--play-token",
            "watch",
            "--sign-secret",
            "both",
            "--play-sign-secret",
            "viewers",
            "--on-publish",
            "http://127.0.0.1:8080/on_publish",
            "--on-play",
            "http://hooks.local/play?key=k",
            "--on-unpublish",
            "http://[::1]:9/u",
            "--on-stop",
            "http://127.0.0.1:9/stop",
            "--hook-timeout",
            "0.5",
            "--api-token",
            "api",
            "--files-token",
            "files",
            "--max-connections",
            "500",
            "--max-per-ip",
            "0",
            "--max-streams",
            "7",
            "--max-players-per-stream",
            "100",
            "--max-publishers-per-ip",
            "2",
            "--max-waiting-per-stream",
            "5",
        ])
        .unwrap();
        let a = &c.access;
        let s = |x: &Option<crate::access::Secret>| x.as_ref().map(|v| v.as_str().to_string());
        assert_eq!(s(&a.publish_token).as_deref(), Some("pub"));
        assert_eq!(s(&a.play_token).as_deref(), Some("watch"));
        assert_eq!(s(&a.publish_sign_secret).as_deref(), Some("both"));
        assert_eq!(
            s(&a.play_sign_secret).as_deref(),
            Some("viewers"),
            "the separate one wins"
        );
        assert_eq!(s(&a.api_token).as_deref(), Some("api"));
        assert_eq!(s(&a.files_token).as_deref(), Some("files"));
        assert_eq!(a.on_publish.as_ref().unwrap().port, 8080);
        assert_eq!(a.on_play.as_ref().unwrap().target, "/play?key=k");
        assert_eq!(a.on_unpublish.as_ref().unwrap().host, "::1");
        assert!(a.on_stop.is_some());
        assert_eq!(a.hook_timeout, Duration::from_millis(500));
        assert_eq!(
            c.limits,
            LimitsConfig {
                max_connections: Some(500),
                max_per_ip: 0,
                max_streams: 7,
                max_players_per_stream: 100,
                max_publishers_per_ip: 2,
                max_waiting_per_stream: 5,
                ..LimitsConfig::default()
            }
        );
        let printed = format!("{c:?}");
        for secret in ["pub\"", "watch", "both", "viewers", "\"api\"", "\"files\""] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }

    #[test]
    fn bad_access_values_exit_with_one_line() {
        let dir = std::env::temp_dir().join(format!("rtmpd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad_file = dir.join("auth.txt");
        std::fs::write(&bad_file, "live/cam k\nlive/cam2\n").unwrap();
        let bad_file = bad_file.to_str().unwrap().to_string();
        for (a, words) in [
            (
                vec!["--publish-token", ""],
                "--publish-token: between 1 and 1024",
            ),
            (vec!["--play-token", "s3 cret"], "--play-token: no spaces"),
            (vec!["--sign-secret", "a\tb"], "--sign-secret: no spaces"),
            (
                vec!["--on-publish", "https://h/x?token=s3cret"],
                "only http://",
            ),
            (
                vec!["--on-play", "h:80"],
                "--on-play 'h:80': not an http:// URL",
            ),
            (vec!["--on-stop", "http://h:0/"], "not a port"),
            (vec!["--hook-timeout", "0"], "--hook-timeout: '0'"),
            (vec!["--hook-timeout", "61"], "between 0.1 and 60"),
            (vec!["--hook-timeout", "x"], "between 0.1 and 60"),
            (vec!["--max-connections", "0"], "--max-connections: '0'"),
            (
                vec!["--max-per-ip", "-1"],
                "--max-per-ip: '-1' is not a count",
            ),
            (vec!["--max-streams", "lots"], "--max-streams"),
            (
                vec!["--auth-file", "/no/such/file"],
                "--auth-file: /no/such/file: ",
            ),
            (
                vec!["--auth-file", bad_file.as_str()],
                "--auth-file: line 2: no publish token",
            ),
        ] {
            let e = origin(&a).unwrap_err().0;
            assert!(e.contains(words), "{a:?}: {e}");
            assert!(
                !e.contains('\n') && !e.contains("s3cret") && !e.contains("s3 cret"),
                "{e}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gateways_take_the_access_options_they_enforce() {
        let Mode::FlvGateway(c) = parse(&args(
            "flv-gateway 8080 http://o:8501?token=up --play-token v --sign-secret s \
             --on-play http://127.0.0.1:1/p --max-per-ip 5 --max-streams 3",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(c.access.play_token.as_ref().unwrap().as_str(), "v");
        assert_eq!(c.access.play_sign_secret.as_ref().unwrap().as_str(), "s");
        assert!(
            c.access.publish_sign_secret.is_none(),
            "nobody publishes to a gateway"
        );
        assert!(c.access.on_play.is_some());
        assert_eq!((c.limits.max_per_ip, c.limits.max_streams), (5, 3));
        for bad in [
            "flv-gateway 8080 http://o:1 --publish-token x",
            "flv-gateway 8080 http://o:1 --on-publish http://h/",
            "flv-gateway 8080 http://o:1 --files-token x",
            "flv-gateway 8080 http://o:1 --max-publishers-per-ip 1",
            "file-gateway --play-token x",
            "file-gateway --max-streams 1",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
        let Mode::FileGateway(c) =
            parse(&args("file-gateway --files-token f --max-connections 9")).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.access.files_token.as_ref().unwrap().as_str(), "f");
        assert_eq!(c.limits.max_connections, Some(9));
    }

    #[test]
    fn issue_24_1_trusted_proxies_and_the_proxy_protocol_parse() {
        let c = origin(&[
            "--trusted-proxy",
            "10.1.2.3/8",
            "--trusted-proxy",
            "2001:db8::1",
            "--proxy-protocol",
        ])
        .unwrap();
        let blocks: Vec<String> = c
            .limits
            .trusted_proxies
            .0
            .iter()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(blocks, ["10.0.0.0/8", "2001:db8::1/128"]);
        assert!(c.limits.proxy_protocol);
        assert!(!origin(&[]).unwrap().limits.proxy_protocol);
        for (a, words) in [
            (
                vec!["--proxy-protocol"],
                "--proxy-protocol needs --trusted-proxy",
            ),
            (
                vec!["--trusted-proxy", "proxy.local"],
                "--trusted-proxy: 'proxy.local'",
            ),
            (
                vec!["--trusted-proxy", "10.0.0.0/40"],
                "prefix length must be 0-32",
            ),
        ] {
            let e = origin(&a).unwrap_err().0;
            assert!(e.contains(words), "{a:?}: {e}");
        }
        for mode in ["flv-gateway 8080 http://o:1", "file-gateway"] {
            let line = format!("{mode} --trusted-proxy 10.0.0.5 --proxy-protocol --print-config");
            let Ok(Mode::PrintConfig(text)) = parse(&args(&line)) else {
                panic!("{line}")
            };
            assert!(
                text.lines()
                    .any(|t| t.split_whitespace().eq(["trusted-proxy", "10.0.0.5/32"])),
                "{text}"
            );
            assert!(
                text.lines()
                    .any(|t| t.split_whitespace().eq(["proxy-protocol", "on"])),
                "{text}"
            );
        }
    }

    #[test]
    fn help_lists_access_options_and_defaults() {
        let Mode::Help(h) = parse(&args("--help")).unwrap() else {
            panic!()
        };
        for opt in [
            "--publish-token",
            "--play-token",
            "--auth-file",
            "--sign-secret",
            "--publish-sign-secret",
            "--play-sign-secret",
            "--on-publish",
            "--on-play",
            "--on-unpublish",
            "--on-stop",
            "--hook-timeout",
            "--api-token",
            "--files-token",
            "--max-connections",
            "--max-per-ip",
            "--max-streams",
            "--max-players-per-stream",
            "--max-publishers-per-ip",
        ] {
            assert!(h.contains(opt), "{opt}");
        }
        assert!(h.contains("[200]") && h.contains("[3]") && h.contains("open-file limit"));
        let Mode::Help(g) = parse(&args("flv-gateway --help")).unwrap() else {
            panic!()
        };
        assert!(g.contains("--play-token") && !g.contains("--publish-token"));
    }
}
