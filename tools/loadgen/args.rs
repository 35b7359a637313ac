//! The command line: `--url` into a `Target` (protocol, address, app and stream), the options
//! into a `Config`, and the connect schedule (`--ramp`). No sockets are opened here.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::sys::ProcSample;
use crate::tls;
use crate::{BATCH, BATCH_EVERY};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Proto {
    Rtmp,
    HttpFlv,
    WsFlv,
    /// HTTP-FLV over TLS: the same request and body as `HttpFlv`, through rustls.
    HttpsFlv,
    /// WS-FLV over TLS.
    WssFlv,
    /// WebRTC (WHEP): the offer POSTed to `http://HOST:PORT/app/stream/whep`, media over UDP.
    Whep,
}

impl Proto {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proto::Rtmp => "rtmp",
            Proto::HttpFlv => "http-flv",
            Proto::WsFlv => "ws-flv",
            Proto::HttpsFlv => "https-flv",
            Proto::WssFlv => "wss-flv",
            Proto::Whep => "whep",
        }
    }

    pub(crate) fn tls(self) -> bool {
        matches!(self, Proto::HttpsFlv | Proto::WssFlv)
    }
}

/// What the TLS viewers of a run share: the client configuration and the server name.
#[derive(Debug)]
pub(crate) struct TlsTarget {
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) proto: Proto,
    pub(crate) addr: SocketAddr,
    /// `host:port` as written in the URL, for the Host header and the tcUrl.
    pub(crate) authority: String,
    /// HTTP request target, `/app/stream.flv?query`.
    pub(crate) path: String,
    /// RTMP: the app and the play name (with its query, which carries tokens).
    pub(crate) app: String,
    pub(crate) stream: String,
    /// https:// and wss://.
    pub(crate) tls: Option<TlsTarget>,
}

pub(crate) fn parse_url(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("bad --url {url:?}: no scheme"))?;
    let (proto, default_port) = match scheme {
        "rtmp" => (Proto::Rtmp, 1935),
        "http" => (Proto::HttpFlv, 80),
        "ws" => (Proto::WsFlv, 80),
        "https" => (Proto::HttpsFlv, 443),
        "wss" => (Proto::WssFlv, 443),
        "whep" => (Proto::Whep, 80),
        _ => {
            return Err(format!(
                "bad --url {url:?}: scheme must be rtmp, http, ws, https, wss or whep"
            ))
        }
    };
    let slash = rest
        .find('/')
        .ok_or_else(|| format!("bad --url {url:?}: no /app/stream path"))?;
    let (authority, path) = rest.split_at(slash);
    let has_port = !authority.ends_with(']')
        && authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let host_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| format!("bad --url {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad --url {url:?}: host has no address"))?;
    let (app, stream) = path[1..]
        .split_once('/')
        .filter(|(a, s)| !a.is_empty() && !s.is_empty())
        .ok_or_else(|| format!("bad --url {url:?}: path must be /app/stream"))?;
    let tls = if proto.tls() {
        Some(TlsTarget {
            config: tls::client_config()?,
            name: tls::server_name(authority).map_err(|e| format!("bad --url {url:?}: {e}"))?,
        })
    } else {
        None
    };
    Ok(Target {
        proto,
        addr,
        authority: authority.to_string(),
        path: path.to_string(),
        app: app.to_string(),
        stream: stream.to_string(),
        tls,
    })
}

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) target: Target,
    pub(crate) viewers: usize,
    pub(crate) duration: Duration,
    /// Connects per second; `None`: `BATCH` every `BATCH_EVERY`.
    pub(crate) ramp: Option<f64>,
    pub(crate) server_pid: Option<u32>,
    pub(crate) connect_timeout: Duration,
    /// whep://: viewers are spread over this many threads, each with its own poll.
    pub(crate) threads: usize,
    pub(crate) json: bool,
}

impl Config {
    pub(crate) fn options() -> getopts::Options {
        let mut o = getopts::Options::new();
        o.optopt(
            "",
            "url",
            "stream to watch: rtmp://HOST:PORT/app/stream, http://HOST:PORT/app/stream.flv, \
             ws://HOST:PORT/app/stream.flv, or the same over TLS: https://... (port 443 by \
             default) or wss://... (any certificate is accepted, handshake signatures are \
             checked; bytes counted are the decrypted HTTP/WebSocket bytes, as for http:// and \
             ws://), or whep://HOST:PORT/app/stream (WebRTC: the offer is POSTed to \
             http://HOST:PORT/app/stream/whep, media comes over UDP; bytes counted are the \
             depacketized media, the datagrams are the wire bytes) (required)",
            "URL",
        );
        o.optopt("", "viewers", "number of viewers [1]", "N");
        o.optopt("", "duration", "length of the run in seconds [30]", "SECS");
        o.optopt(
            "",
            "ramp",
            "connects per second [all at once, in batches of 500 every 100 ms]",
            "PER_SEC",
        );
        o.optopt(
            "",
            "server-pid",
            "sample this process's CPU time and memory from /proc at start and end",
            "PID",
        );
        o.optopt(
            "",
            "connect-timeout",
            "seconds a viewer may take to start playing [10]",
            "SECS",
        );
        o.optopt(
            "",
            "threads",
            "whep:// only: threads the viewers are spread over, each with its own poll [1]",
            "N",
        );
        o.optflag("", "json", "print the report as one line of JSON");
        o.optflag("h", "help", "print this help");
        o
    }

    /// `Ok(None)` when `--help` was printed.
    pub(crate) fn parse(args: &[String]) -> Result<Option<Config>, String> {
        let opts = Self::options();
        let m = opts.parse(args).map_err(|e| e.to_string())?;
        if m.opt_present("help") {
            print!(
                "{}",
                opts.usage("Usage: rtmpd-load --url URL [OPTIONS]\n\nOpens N viewers of one live stream and reports what they received and what the server spent.")
            );
            return Ok(None);
        }
        if !m.free.is_empty() {
            return Err(format!("unexpected argument {:?}", m.free[0]));
        }
        let url = m.opt_str("url").ok_or("--url is required")?;
        let target = parse_url(&url)?;
        let viewers = match m.opt_str("viewers") {
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0 && n <= 1_000_000)
                .ok_or_else(|| format!("bad --viewers {v:?}: want 1..1000000"))?,
            None => 1,
        };
        let secs = |name: &str, default: f64| -> Result<f64, String> {
            match m.opt_str(name) {
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| format!("bad --{name} {v:?}: want seconds > 0")),
                None => Ok(default),
            }
        };
        let duration = Duration::from_secs_f64(secs("duration", 30.0)?);
        let connect_timeout = Duration::from_secs_f64(secs("connect-timeout", 10.0)?);
        let ramp = match m.opt_str("ramp") {
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .ok_or_else(|| format!("bad --ramp {v:?}: want connects per second > 0"))?,
            ),
            None => None,
        };
        let server_pid = match m.opt_str("server-pid") {
            Some(v) => {
                let pid = v
                    .parse::<u32>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("bad --server-pid {v:?}"))?;
                // Fail now rather than print a report without the server's figures.
                ProcSample::read(pid).map_err(|e| format!("--server-pid {pid}: {e}"))?;
                Some(pid)
            }
            None => None,
        };
        let threads = match m.opt_str("threads") {
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|&n| (1..=64).contains(&n))
                .ok_or_else(|| format!("bad --threads {v:?}: want 1..64"))?,
            None => 1,
        };
        Ok(Some(Config {
            url,
            threads,
            target,
            viewers,
            duration,
            ramp,
            server_pid,
            connect_timeout,
            json: m.opt_present("json"),
        }))
    }

    /// How many viewers should have been started `elapsed` into the run.
    pub(crate) fn due(&self, elapsed: Duration) -> usize {
        let n = match self.ramp {
            Some(rate) => (elapsed.as_secs_f64() * rate).floor() as usize + 1,
            None => (elapsed.as_millis() / BATCH_EVERY.as_millis()) as usize * BATCH + BATCH,
        };
        n.min(self.viewers)
    }

    /// When the next connect is due after `elapsed` (only while some are left).
    pub(crate) fn next_due(&self, elapsed: Duration) -> Duration {
        match self.ramp {
            Some(rate) => {
                let started = (elapsed.as_secs_f64() * rate).floor() + 1.0;
                Duration::from_secs_f64(started / rate)
            }
            None => {
                let step = elapsed.as_millis() / BATCH_EVERY.as_millis() + 1;
                BATCH_EVERY * step as u32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("rtmp://127.0.0.1:1936/live/cam?token=x").unwrap();
        assert_eq!(t.proto, Proto::Rtmp);
        assert_eq!(t.addr.port(), 1936);
        assert_eq!((t.app.as_str(), t.stream.as_str()), ("live", "cam?token=x"));
        let t = parse_url("rtmp://127.0.0.1/live/cam").unwrap();
        assert_eq!(t.addr.port(), 1935);
        let t = parse_url("ws://127.0.0.1:8501/live/cam.flv").unwrap();
        assert_eq!((t.proto, t.path.as_str()), (Proto::WsFlv, "/live/cam.flv"));
        assert_eq!(t.authority, "127.0.0.1:8501");
        assert!(t.tls.is_none());
        assert!(parse_url("rtsp://127.0.0.1/live/cam").is_err());
        assert!(parse_url("http://127.0.0.1:80/live").is_err());
        assert!(parse_url("http://127.0.0.1:80").is_err());
    }

    #[test]
    fn tls_urls() {
        let t = parse_url("https://127.0.0.1/live/cam.flv?token=x").unwrap();
        assert_eq!(t.proto, Proto::HttpsFlv);
        assert_eq!(t.addr.port(), 443);
        assert_eq!(t.authority, "127.0.0.1");
        assert_eq!(t.path, "/live/cam.flv?token=x");
        let tls = t.tls.as_ref().unwrap();
        assert_eq!(
            format!("{:?}", tls.name),
            format!("{:?}", ServerName::try_from("127.0.0.1").unwrap())
        );
        let t = parse_url("https://localhost:8443/live/cam.flv").unwrap();
        assert_eq!(
            (t.addr.port(), t.authority.as_str()),
            (8443, "localhost:8443")
        );
        assert_eq!(t.tls.unwrap().name.to_str(), "localhost");
        let t = parse_url("wss://[::1]:9443/live/cam.flv").unwrap();
        assert_eq!((t.proto, t.addr.port()), (Proto::WssFlv, 9443));
        assert!(matches!(t.tls.unwrap().name, ServerName::IpAddress(_)));
        assert_eq!(
            parse_url("wss://127.0.0.1/a/b.flv").unwrap().addr.port(),
            443
        );
        assert!(Proto::HttpsFlv.tls() && Proto::WssFlv.tls() && !Proto::HttpFlv.tls());
        assert_eq!(Proto::HttpsFlv.name(), "https-flv");
    }

    #[test]
    fn options_reject_bad_values() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Config::parse(&args(&["--viewers", "3"])).is_err());
        let u = "--url=http://127.0.0.1:1/a/b.flv";
        assert!(Config::parse(&args(&[u, "--viewers", "0"])).is_err());
        assert!(Config::parse(&args(&[u, "--duration", "-1"])).is_err());
        assert!(Config::parse(&args(&[u, "--ramp", "x"])).is_err());
        let c = Config::parse(&args(&[u, "--viewers", "1200", "--duration", "2.5"]))
            .unwrap()
            .unwrap();
        assert_eq!(c.viewers, 1200);
        assert_eq!(c.duration, Duration::from_millis(2500));
    }

    #[test]
    fn connect_schedule() {
        let c = Config::parse(&["--url=rtmp://127.0.0.1/a/b".into(), "--viewers=1200".into()])
            .unwrap()
            .unwrap();
        assert_eq!(c.due(Duration::ZERO), 500);
        assert_eq!(c.due(Duration::from_millis(150)), 1000);
        assert_eq!(c.due(Duration::from_secs(5)), 1200);
        assert_eq!(
            c.next_due(Duration::from_millis(150)),
            Duration::from_millis(200)
        );
        let r = Config::parse(&[
            "--url=rtmp://127.0.0.1/a/b".into(),
            "--viewers=100".into(),
            "--ramp=10".into(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(r.due(Duration::ZERO), 1);
        assert_eq!(r.due(Duration::from_millis(1050)), 11);
        assert_eq!(
            r.next_due(Duration::from_millis(1050)),
            Duration::from_millis(1100)
        );
    }
}
